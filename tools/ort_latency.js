// Batch-1 latency of an exported ONNX model in ONNX Runtime (onnxruntime-node, CPU execution provider, all
// graph optimisations), for docs/EXPORT.md's comparison with `ibnas latency measure`. One JSON line.
// Usage: NODE_PATH=CACHE/node_modules node tools/ort_latency.js MODEL.onnx RES [THREADS=1] [WARMUP=10] [RUNS=50]
// (CACHE: where onnxruntime-node is installed, e.g. ~/.cache/ibnas-bench/ort; docs/EXPORT.md shows how.)
const ort = require('onnxruntime-node');
const [model, resArg, thrArg, warmArg, runsArg] = process.argv.slice(2);
const res = parseInt(resArg, 10), threads = parseInt(thrArg || '1', 10);
const warm = parseInt(warmArg || '10', 10), runs = parseInt(runsArg || '50', 10);
(async () => {
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const data = new Float32Array(3 * res * res);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', data, [1, 3, res, res]) };
  for (let i = 0; i < warm; i++) await sess.run(feeds);
  const ts = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    await sess.run(feeds);
    ts.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  ts.sort((a, b) => a - b);
  console.log(JSON.stringify({ impl: 'onnxruntime-node-' + require('onnxruntime-node/package.json').version,
    model, res, threads, runs, median_ms: +ts[Math.floor(runs / 2)].toFixed(3), min_ms: +ts[0].toFixed(3) }));
})().catch((e) => { console.error(String(e && e.message || e)); process.exit(1); });

// Runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU EP) on a raw float32 batch, for tests/test_export.c.
// Usage: node ort_logits.js MODEL.onnx INPUT.f32 N H W OUTPUT.f32 [THREADS]
// Reads N*3*H*W little-endian floats, writes the first output's floats; prints its shape as JSON.
const ort = require('onnxruntime-node');
const fs = require('fs');
const [model, input, n, h, w, output, threads] = process.argv.slice(2);
(async () => {
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: parseInt(threads || '1', 10), interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const buf = fs.readFileSync(input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const dims = [parseInt(n, 10), 3, parseInt(h, 10), parseInt(w, 10)];
  const res = await sess.run({ [sess.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(x), dims) });
  const y = res[sess.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify({ input: sess.inputNames[0], output: sess.outputNames[0], dims: y.dims,
    ort: require('onnxruntime-node/package.json').version }));
})().catch((e) => { console.error(String(e && e.message || e)); process.exit(1); });

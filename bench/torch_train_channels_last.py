# PyTorch's faster CPU layout, for the record beside ../shared/bench/torch_mobilenetv2_train.py: the
# same measurement (torchvision mobilenet_v2, SGD momentum 0.9, random data, median of 10 steps after
# 3 of warm-up) with the model and the batch in channels_last (NHWC) memory format, where oneDNN's
# convolutions run much faster than in the default NCHW. A tensor made by permuting NHWC image data
# (as the Tiny ImageNet recipe's to_tensor does) is channels_last already, so real-data PyTorch
# training runs this path. Usage: python3 torch_train_channels_last.py [THREADS [RES [BATCH [CLASSES]]]]
import json, sys, time, torch, torchvision
threads, res, bs, classes = (int(a) for a in (sys.argv[1:] + ["2", "64", "32", "10"][len(sys.argv) - 1:])[:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.mobilenet_v2(num_classes=classes).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
x = torch.randn(bs, 3, res, res).to(memory_format=torch.channels_last)
y = torch.randint(0, classes, (bs,))
lossf = torch.nn.CrossEntropyLoss()


def step():
    opt.zero_grad(); lossf(m(x), y).backward(); opt.step()


def median_s(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


for _ in range(3): step()
train = median_s(step, 10)
print(json.dumps({"impl": "pytorch-" + torch.__version__ + "-channels_last", "threads": threads, "res": res,
                  "batch": bs, "train_img_per_s": round(bs / train, 1)}))

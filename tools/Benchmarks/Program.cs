using System.Diagnostics;
using OnnxOutlierTools.Benchmarks;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;

// Load + save of a Llama-shaped model with ~1 GB of FLOAT16 weights in external data, against `cp -r` of the
// same folder, in one run, alternating the two, several repetitions; prints each time and the median ratio.
//   dotnet run -c Release --project tools/Benchmarks -- save-vs-copy [--gigabytes 1] [--repetitions 7] [--work DIR]
//   dotnet run -c Release --project tools/Benchmarks -- big-protobuf [--work DIR]     (the > 2 GB save path at full size)
//   dotnet run -c Release --project tools/Benchmarks -- memory [--nodes 100000,1000000] [--embed-megabytes 512] [--work DIR]
//       (peak RSS and bytes per node of load / inspect / save / --embed, one child process per measurement)
//   dotnet run -c Release --project tools/Benchmarks -- scale [--parts all|edits,generate,recognize,embedded-load,outputs] [--layers 1464]
//       (edit, generation and recognition cost against the same on a smaller graph, in one run)
//   dotnet run -c Release --project tools/Benchmarks -- probe [--models all|llama|stories] [--repetitions 5] [--windows 4] [--seq-len 512]
//       (plain ORT forward vs the probed model vs every intermediate tensor as an output: time and peak RSS ratios)
//   dotnet run -c Release --project tools/Benchmarks -- fold [--sizes 1,4] [--repetitions 3] [--work DIR] [--keep]
//       (norm-gain folding + SmoothQuant + durable save of a FLOAT16 model in external data vs cp -r; sync: time, peak RSS)
//   dotnet run -c Release --project tools/Benchmarks -- quantize-scale [--sizes 1,4] [--schemes int4-rtn,w8a8-dynamic] [--repetitions 1] [--keep]
//       (quantize + durable save of a FLOAT16 model in external data vs cp -r; sync: time, peak RSS per child, growth)
string command = args.FirstOrDefault() ?? "save-vs-copy";
if (command == MemoryBenchmark.ChildCommand) return MemoryBenchmark.Child(args[1..]);
if (command == ProbeBenchmark.ChildCommand) return ProbeBenchmark.Child(args[1..]);
if (command == FoldBenchmark.ChildCommand) return FoldBenchmark.ChildMain(args[1..]);
if (command == QuantizeScaleBenchmark.ChildCommand) return QuantizeScaleBenchmark.ChildMain(args[1..]);
double gigabytes = Option("--gigabytes", 1.0);
int repetitions = (int)Option("--repetitions", 7);
string work = args.SkipWhile(a => a != "--work").Skip(1).FirstOrDefault() ?? Path.Combine(Path.GetTempPath(), "onnx-outliers-bench");

Directory.CreateDirectory(work);
try
{
    return command switch
    {
        "save-vs-copy" => SaveVsCopy(),
        "probe" => ProbeBenchmark.Run(work, (int)Option("--repetitions", 5), args.SkipWhile(a => a != "--models").Skip(1).FirstOrDefault() ?? "all",
            (int)Option("--windows", 4), (int)Option("--seq-len", 512)),
        "big-protobuf" => BigProtobuf(),
        "kernel" => KernelBenchmark.Run(),
        "fold" => FoldBenchmark.Run(work, args.SkipWhile(a => a != "--sizes").Skip(1).FirstOrDefault() ?? "1,4", (int)Option("--repetitions", 3), args.Contains("--keep")),
        "quantize-scale" => QuantizeScaleBenchmark.Run(work, args.SkipWhile(a => a != "--sizes").Skip(1).FirstOrDefault() ?? "1,4",
            args.SkipWhile(a => a != "--schemes").Skip(1).FirstOrDefault() ?? "int4-rtn,w8a8-dynamic", (int)Option("--repetitions", 1), args.Contains("--keep")),
        "scale" => ScaleBenchmark.Run(args.SkipWhile(a => a != "--parts").Skip(1).FirstOrDefault() ?? "all", (int)Option("--layers", 1464)),
        "memory" => MemoryBenchmark.Run(work, args.SkipWhile(a => a != "--nodes").Skip(1).FirstOrDefault() ?? "100000,1000000",
            (long)Option("--embed-megabytes", 512)),
        _ => Usage(),
    };
}
finally
{
    if (!args.Contains("--keep")) Directory.Delete(work, recursive: true);
}

int Usage()
{
    Console.Error.WriteLine("usage: Benchmarks save-vs-copy [--gigabytes G] [--repetitions N] [--work DIR] | big-protobuf [--work DIR] | " +
        "memory [--nodes N,N..] [--embed-megabytes M] [--work DIR] | probe [--models all|llama|stories] [--repetitions N] [--windows N] [--seq-len N] | fold [--sizes 1,4] [--repetitions N] [--keep] | scale [--parts all|edits,generate,recognize,embedded-load,outputs] [--layers 1464]");
    return 2;
}

// A fresh, empty target path (the previous one deleted and flushed untimed).
string Target(string name)
{
    string path = Path.Combine(work, name);
    if (Directory.Exists(path)) Directory.Delete(path, true);
    Run("sync");
    Thread.Sleep(500); // let the file system finish discarding the deleted copy before the next timing
    return path;
}

void LoadSave(string target, bool durable)
{
    using var model = ModelReader.Load(Path.Combine(work, "source", "model.onnx"));
    ModelWriter.Save(model, Path.Combine(target, "model.onnx"), new SaveOptions { Durable = durable });
}

static double Timed(Action action)
{
    var sw = Stopwatch.StartNew();
    action();
    return sw.Elapsed.TotalSeconds;
}

int SaveVsCopy()
{
    string source = Path.Combine(work, "source");
    Directory.CreateDirectory(source);
    var config = SyntheticDecoder.BenchmarkConfig(gigabytes);
    Console.WriteLine($"generating a Llama-shaped FLOAT16 model: {config.Layers} layers, dim {config.Dim}, {config.ParameterCount / 1e6:F0}M parameters ...");
    var sw = Stopwatch.StartNew();
    using (var model = SyntheticDecoder.CreateBenchmarkModel(config, seed: 1))
        ModelWriter.Save(model, Path.Combine(source, "model.onnx"), new SaveOptions { Layout = TensorLayout.External });
    long bytes = Directory.GetFiles(source).Sum(f => new FileInfo(f).Length);
    Console.WriteLine($"  {bytes / 1e9:F2} GB in {sw.Elapsed.TotalSeconds:F1} s ({string.Join(", ", Directory.GetFiles(source).Select(Path.GetFileName))})");
    // Two fair pairs, each side timed from a clean state prepared untimed (previous copy deleted, every dirty
    // page flushed with `sync`, a pause), so neither side pays for the other's writeback; the order within
    // each pair alternates ABBA (A B | B A | A B ...) so that drift in the disk's state favours neither:
    //   durable:  load + save with fsync before the atomic rename (the default)  vs  cp -r; sync
    //   buffered: load + save without fsync (Durable = false)                      vs  cp -r
    // One untimed warm-up of each (JIT, page cache of the source), then the timed repetitions.
    Run("cp", "-r", source, Target("cp"));
    LoadSave(Target("save"), durable: true);
    Console.WriteLine($"load + save vs cp -r, {repetitions} repetitions after a warm-up, ABBA order, setup (delete, sync, pause) untimed before each:");
    var results = new Dictionary<string, List<double>> { ["cp+sync"] = [], ["save"] = [], ["cp"] = [], ["save-nofsync"] = [] };
    var steps = new (string Key, Action<string> Run, string Folder)[]
    {
        ("cp+sync", t => { Run("cp", "-r", source, t); Run("sync"); }, "cp"),
        ("save", t => LoadSave(t, durable: true), "save"),
        ("cp", t => Run("cp", "-r", source, t), "cp"),
        ("save-nofsync", t => LoadSave(t, durable: false), "save"),
    };
    for (int i = 0; i < repetitions; i++)
    {
        // Pairs (0, 1) and (2, 3); odd repetitions run each pair's second side first.
        foreach (int pair in new[] { 0, 2 })
            foreach (int side in i % 2 == 0 ? new[] { pair, pair + 1 } : new[] { pair + 1, pair })
            {
                var step = steps[side];
                string target = Target(step.Folder); // untimed setup
                results[step.Key].Add(Timed(() => step.Run(target)));
            }
        Console.WriteLine($"  rep {i + 1} ({(i % 2 == 0 ? "copy first" : "save first")}): cp -r+sync {results["cp+sync"][^1]:F2} s, load+save {results["save"][^1]:F2} s | " +
            $"cp -r {results["cp"][^1]:F2} s, load+save (no fsync) {results["save-nofsync"][^1]:F2} s");
    }
    double durableRatio = Median(results["save"]) / Median(results["cp+sync"]);
    double bufferedRatio = Median(results["save-nofsync"]) / Median(results["cp"]);
    Console.WriteLine($"median: load+save {Median(results["save"]):F2} s vs cp -r+sync {Median(results["cp+sync"]):F2} s -> ratio {durableRatio:F2}");
    Console.WriteLine($"median: load+save (no fsync) {Median(results["save-nofsync"]):F2} s vs cp -r {Median(results["cp"]):F2} s -> ratio {bufferedRatio:F2}");
    Console.WriteLine($"target: <= 1.3x the copy ({bytes / 1e9:F2} GB, {bytes / Median(results["save"]) / 1e9:F2} GB/s durable)");
    return 0;
}

// The full-size > 2 GB path: a model with 2.2 GB of initializers saved with default options goes external.
int BigProtobuf()
{
    var config = SyntheticDecoder.BenchmarkConfig(2.2);
    var sw = Stopwatch.StartNew();
    using var model = SyntheticDecoder.CreateBenchmarkModel(config, seed: 2);
    var result = ModelWriter.Save(model, Path.Combine(work, "big", "model.onnx"), new SaveOptions { Layout = TensorLayout.Embed });
    Console.WriteLine($"asked to embed {config.ParameterCount * 2 / 1e9:F2} GB: forced external = {result.ForcedExternal}, " +
        $"{result.ExternalTensors} external tensors ({result.ExternalBytes / 1e9:F2} GB), .onnx {new FileInfo(result.ModelPath).Length} bytes, {sw.Elapsed.TotalSeconds:F1} s");
    sw.Restart();
    using var reloaded = ModelReader.Load(result.ModelPath);
    Console.WriteLine($"reloaded in {sw.Elapsed.TotalMilliseconds:F0} ms: {reloaded.Graph.Initializers.Count} initializers");
    return result.ForcedExternal ? 0 : 1;
}

double Option(string name, double fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out double v) ? v : fallback;
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

static void Run(string file, params string[] arguments)
{
    using var process = Process.Start(new ProcessStartInfo(file, arguments) { UseShellExecute = false })!;
    process.WaitForExit();
    if (process.ExitCode != 0) throw new InvalidOperationException($"{file} exited with {process.ExitCode}");
}

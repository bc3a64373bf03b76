using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;

// Load + save of a Llama-shaped model with ~1 GB of FLOAT16 weights in external data, against `cp -r` of the
// same folder, in one run, alternating the two, several repetitions; prints each time and the median ratio.
//   dotnet run -c Release --project tools/Benchmarks -- save-vs-copy [--gigabytes 1] [--repetitions 5] [--work DIR] [--no-fsync]
//   dotnet run -c Release --project tools/Benchmarks -- big-protobuf [--work DIR]     (the > 2 GB save path at full size)
string command = args.FirstOrDefault() ?? "save-vs-copy";
double gigabytes = Option("--gigabytes", 1.0);
int repetitions = (int)Option("--repetitions", 5);
bool durable = !args.Contains("--no-fsync");
string work = args.SkipWhile(a => a != "--work").Skip(1).FirstOrDefault() ?? Path.Combine(Path.GetTempPath(), "onnx-outliers-bench");

Directory.CreateDirectory(work);
try
{
    return command switch
    {
        "save-vs-copy" => SaveVsCopy(),
        "big-protobuf" => BigProtobuf(),
        _ => Usage(),
    };
}
finally
{
    Directory.Delete(work, recursive: true);
}

int Usage()
{
    Console.Error.WriteLine("usage: Benchmarks save-vs-copy [--gigabytes G] [--repetitions N] [--work DIR] [--no-fsync] | big-protobuf [--work DIR]");
    return 2;
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
    Console.WriteLine($"load + save ({(durable ? "fsync before rename, the default" : "no fsync")}) vs cp -r, {repetitions} repetitions, alternating:");

    var copy = new List<double>();
    var save = new List<double>();
    for (int i = 0; i < repetitions; i++)
    {
        string copyTarget = Path.Combine(work, $"copy{i}");
        sw.Restart();
        Run("cp", "-r", source, copyTarget);
        copy.Add(sw.Elapsed.TotalSeconds);
        Directory.Delete(copyTarget, true);

        string saveTarget = Path.Combine(work, $"save{i}");
        sw.Restart();
        using (var model = ModelReader.Load(Path.Combine(source, "model.onnx")))
            ModelWriter.Save(model, Path.Combine(saveTarget, "model.onnx"), new SaveOptions { Durable = durable });
        save.Add(sw.Elapsed.TotalSeconds);
        Directory.Delete(saveTarget, true);
        Console.WriteLine($"  rep {i + 1}: cp -r {copy[^1]:F2} s, load+save {save[^1]:F2} s, ratio {save[^1] / copy[^1]:F2}");
    }
    double ratio = Median(save) / Median(copy);
    Console.WriteLine($"median: cp -r {Median(copy):F2} s, load+save {Median(save):F2} s ({bytes / Median(save) / 1e9:F2} GB/s)");
    Console.WriteLine($"median ratio load+save / cp -r = {ratio:F2} (target <= 1.3)");
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

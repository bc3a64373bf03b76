using System.Diagnostics;
using System.Globalization;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Benchmarks;

/// <summary>Cost of probing, in one run: the plain ORT forward (logits only) vs the probed model (logits + the probes'
/// statistics, merged into CalibrationStatistics as analyze does) vs the naive approach of ORT's calibrators (every
/// intermediate tensor marked as a graph output and copied out). Each variant runs in a fresh child process (so peak
/// RSS is its own), on the same windows, with one untimed warm-up; the median over repetitions is reported, with ratios
/// to the plain run of the same invocation. Variants alternate plain/probed/naive, naive/probed/plain between
/// repetitions so that neither order nor machine drift favours one.</summary>
internal static class ProbeBenchmark
{
    public const string ChildCommand = "probe-child";
    private static readonly string[] Variants = ["plain", "probed", "naive"];

    public static int Run(string work, int repetitions, string size, int windows, int sequence)
    {
        var models = new List<(string Name, string Path)>();
        if (size is "all" or "llama")
        {
            // Realistic width (issue 8): dim 1024, 8 layers, FFN 2816, 16 heads / 8 KV heads, fp32, vocab 32000 shared head.
            var config = new DecoderConfig(1024, 2816, 8, 16, 8, 32000, 2048);
            string path = System.IO.Path.Combine(work, "llama-1024x8", "model.onnx");
            Console.Error.WriteLine($"generating a {config.ParameterCount / 1e6:F0}M-parameter fp32 decoder ...");
            using (var model = SyntheticDecoder.CreateModel(config, 7))
                ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
            models.Add(($"dim 1024, 8 layers, FFN 2816 ({config.ParameterCount / 1e6:F0}M params, fp32)", path));
        }
        if (size is "all" or "stories")
        {
            string checkpoint = System.IO.Path.Combine(FindShared(), "fixtures", "llama2c", "stories260K.bin");
            string path = System.IO.Path.Combine(work, "stories260K", "model.onnx");
            using (var model = LlamaOnnxBuilder.Build(Llama2cCheckpoint.Load(checkpoint)))
                ModelWriter.Save(model, path, new SaveOptions { Durable = false });
            models.Add(("stories260K (dim 64, 5 layers)", path));
        }
        Console.WriteLine($"{windows} windows x {sequence} tokens per measurement, batch 1, CPU, {Environment.ProcessorCount} cores; " +
            $"median of {repetitions} repetitions (fresh process each, one untimed warm-up run inside); peak = VmHWM of the child");
        foreach (var (name, path) in models)
        {
            var results = Variants.ToDictionary(v => v, _ => new List<ChildResult>());
            for (int r = 0; r < repetitions; r++)
                foreach (string variant in r % 2 == 0 ? Variants : Variants.Reverse())
                    results[variant].Add(Measure(variant, path, windows, sequence));
            var plain = Median(results["plain"]);
            Console.WriteLine($"\n{name}");
            Console.WriteLine($"{"variant",-8} {"time s",8} {"x plain",8} {"peak MiB",9} {"x plain",8} {"outputs",8} {"fetched MiB/run",16}");
            foreach (string variant in Variants)
            {
                var m = Median(results[variant]);
                Console.WriteLine($"{variant,-8} {m.Seconds,8:F3} {m.Seconds / plain.Seconds,8:F2} {MemoryBenchmark.Mib(m.PeakBytes),9:F0} {m.PeakBytes / (double)plain.PeakBytes,8:F2} " +
                    $"{m.Outputs,8} {MemoryBenchmark.Mib(m.FetchedBytes),16:F1}");
            }
        }
        return 0;
    }

    private sealed record ChildResult(double Seconds, long PeakBytes, int Outputs, long FetchedBytes);

    private static ChildResult Median(List<ChildResult> list)
    {
        var byTime = list.OrderBy(r => r.Seconds).ToList();
        var byPeak = list.OrderBy(r => r.PeakBytes).ToList();
        var t = byTime[byTime.Count / 2];
        return t with { PeakBytes = byPeak[byPeak.Count / 2].PeakBytes };
    }

    private static ChildResult Measure(string variant, string path, int windows, int sequence)
    {
        string host = Environment.ProcessPath!;
        string[] arguments = System.IO.Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? [typeof(ProbeBenchmark).Assembly.Location, ChildCommand, variant, path, $"{windows}", $"{sequence}"]
            : [ChildCommand, variant, path, $"{windows}", $"{sequence}"];
        using var process = Process.Start(new ProcessStartInfo(host, arguments) { UseShellExecute = false, RedirectStandardOutput = true })!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{variant} of {path} exited with {process.ExitCode}: {output}");
        var p = output.Trim().Split(' ');
        return new ChildResult(double.Parse(p[0], CultureInfo.InvariantCulture), long.Parse(p[1], CultureInfo.InvariantCulture),
            int.Parse(p[2], CultureInfo.InvariantCulture), long.Parse(p[3], CultureInfo.InvariantCulture));
    }

    /// <summary>Runs one variant: prints "seconds peak-bytes outputs fetched-bytes-per-run".</summary>
    public static int Child(string[] args)
    {
        string variant = args[0], path = args[1];
        int windows = int.Parse(args[2], CultureInfo.InvariantCulture), sequence = int.Parse(args[3], CultureInfo.InvariantCulture);
        using var model = ModelReader.Load(path);
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException($"{path}: not recognized");
        int vocab = (int)structure.Embedding!.TokenTable.ConstValue!.Dims[0];
        var ids = Enumerable.Range(0, windows).Select(w => Enumerable.Range(0, sequence).Select(i => (int)((7L * (i + w * sequence) + 3) % vocab)).ToArray()).ToList();
        var settings = new SessionSettings { Device = ExecutionDevice.Cpu };
        string logits = model.Graph.Outputs[0].Name;
        switch (variant)
        {
            case "plain":
            {
                using var session = InMemoryModel.Open(model, settings);
                var plan = FeedPlan.Create(path, session.Inputs, session.OutputNames);
                return Timed(() => { foreach (var w in ids) { using var o = session.RunWithoutCopy(plan.Build(1, sequence, w, 0, null), [logits]); } },
                    1, session.OutputNames.Count > 0 ? Bytes(session, plan, ids[0], sequence, [logits]) : 0);
            }
            case "probed":
            {
                var manifest = ProbeModel(model, structure);
                using var session = InMemoryModel.Open(model, settings);
                var plan = FeedPlan.Create(path, session.Inputs, session.OutputNames);
                var names = ProbeOutputDecoder.OutputNames(manifest).Prepend(logits).ToArray();
                return Timed(() =>
                {
                    var statistics = new CalibrationStatistics(manifest);
                    for (int w = 0; w < ids.Count; w++)
                    {
                        using var o = session.RunWithoutCopy(plan.Build(1, sequence, ids[w], 0, null), names);
                        ProbeOutputDecoder.Merge(statistics, o, new BatchTokens([w], sequence, ids[w]));
                    }
                }, names.Length, Bytes(session, plan, ids[0], sequence, names));
            }
            case "naive":
            {
                // What ORT's calibrators do (augment_graph): every node output of float type becomes a graph output. The
                // exported graph does not type its intermediate values; ORT infers an untyped output's type, and the
                // non-float ones (shapes, indices) are left out of the fetch below.
                var outputs = model.Graph.Outputs.ToHashSet();
                foreach (var node in model.Graph.Nodes.ToList())
                    foreach (var value in node.Outputs)
                        if (value is not null && value.ElementType is null or Tensors.TensorDataType.Float && !outputs.Contains(value))
                        {
                            model.Graph.AddOutput(value);
                            outputs.Add(value);
                        }
                using var session = InMemoryModel.Open(model, settings);
                var plan = FeedPlan.Create(path, session.Inputs, session.OutputNames);
                var names = session.OutputNames
                    .Where(n => session.Session.OutputMetadata[n].ElementDataType == Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float).ToArray();
                return Timed(() => { foreach (var w in ids) { var copied = session.Run(plan.Build(1, sequence, w, 0, null), names); GC.KeepAlive(copied); } },
                    names.Length, Bytes(session, plan, ids[0], sequence, names));
            }
            default:
                Console.Error.WriteLine($"unknown variant {variant}");
                return 2;
        }
    }

    private static ProbeManifest ProbeModel(Model model, Structure.Roles.ModelStructure structure)
    {
        var pass = new ProbePass(structure);
        pass.Run(new Passes.PassContext(model));
        return pass.Manifest!;
    }

    private static long Bytes(ModelSession session, FeedPlan plan, int[] window, int sequence, IReadOnlyList<string> names)
    {
        using var o = session.RunWithoutCopy(plan.Build(1, sequence, window, 0, null), names);
        return o.Sum(t => t.ByteLength);
    }

    private static int Timed(Action run, int outputs, long fetched)
    {
        run(); // warm-up: session initialization, arena growth
        var clock = Stopwatch.StartNew();
        run();
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{seconds} {MemoryBenchmark.PeakRss()} {outputs} {fetched}"));
        return 0;
    }

    private static string FindShared()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(System.IO.Path.Combine(dir.FullName, "shared", "fixtures"))) return System.IO.Path.Combine(dir.FullName, "shared");
        return Environment.GetEnvironmentVariable("ONNX_OUTLIERS_SHARED") ?? throw new DirectoryNotFoundException("../shared not found (set ONNX_OUTLIERS_SHARED)");
    }

}

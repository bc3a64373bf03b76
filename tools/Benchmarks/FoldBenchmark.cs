using System.Diagnostics;
using System.Globalization;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Benchmarks;

/// <summary>Scale of the folds (issue 9 item 7): norm-gain folding then SmoothQuant on a generated Llama-shaped FLOAT16 model
/// in external data, saved durably to a new folder, against <c>cp -r; sync</c> of the model folder, in one run: 1 GB and 4 GB
/// models, each side in a fresh child process (peak RSS = its VmHWM), the setup (delete, sync, pause) untimed, ABBA order,
/// medians. SmoothQuant's activation ranges are synthetic (a fixed pattern per channel at every fold site's probe point, the
/// <see cref="ActivationRanges"/> the pass reads): the benchmark measures the rewrite and the save, not a calibration.</summary>
internal static class FoldBenchmark
{
    public const string ChildCommand = "fold-child";

    public static int Run(string work, string sizes, int repetitions, bool keep = false)
    {
        Console.WriteLine($"fold norms + smooth (alpha 0.5) + durable save vs cp -r; sync, FLOAT16 weights in external data, {Environment.ProcessorCount} cores, " +
            $"median of {repetitions} (ABBA, setup untimed), peak = VmHWM of the child");
        Console.WriteLine($"{"model",-10} {"cp+sync s",10} {"fold+save s",12} {"ratio",6} {"fold peak MiB",14} {"cp peak MiB",12}");
        var peaks = new List<(double Gb, long Peak)>();
        foreach (string size in sizes.Split(','))
        {
            double gigabytes = double.Parse(size, CultureInfo.InvariantCulture);
            string source = Path.Combine(work, $"source-{size}g");
            var config = SyntheticDecoder.BenchmarkConfig(gigabytes);
            if (!File.Exists(Path.Combine(source, "model.onnx"))) // kept from an earlier run with --keep
                using (var model = SyntheticDecoder.CreateBenchmarkModel(config, seed: 3))
                    ModelWriter.Save(model, Path.Combine(source, "model.onnx"), new SaveOptions { Layout = TensorLayout.External, Durable = false });
            long bytes = Directory.GetFiles(source).Sum(f => new FileInfo(f).Length);
            var copy = new List<double>();
            var fold = new List<(double Seconds, long Peak)>();
            if (repetitions == 0) continue; // --repetitions 0 --keep: only generate the models
            Child("copy", source, Target(work, "copy"));           // warm-up (page cache, JIT), untimed
            Child("fold", source, Target(work, "fold"));
            for (int r = 0; r < repetitions; r++)
                foreach (string side in r % 2 == 0 ? new[] { "copy", "fold" } : ["fold", "copy"])
                {
                    var (seconds, peak) = Child(side, source, Target(work, side));
                    if (side == "copy") copy.Add(seconds); else fold.Add((seconds, peak));
                }
            double c = Median(copy), f = Median(fold.Select(x => x.Seconds).ToList());
            long foldPeak = (long)Median(fold.Select(x => (double)x.Peak).ToList());
            peaks.Add((bytes / 1e9, foldPeak));
            Console.WriteLine($"{bytes / 1e9,7:F2} GB {c,10:F2} {f,12:F2} {f / c,6:F2} {MemoryBenchmark.Mib(foldPeak),14:F0} {"-",12}");
            if (!keep) Directory.Delete(source, recursive: true);
        }
        if (peaks.Count >= 2)
            Console.WriteLine($"peak RSS growth {peaks[0].Gb:F2} GB -> {peaks[^1].Gb:F2} GB: {(peaks[^1].Peak / (double)peaks[0].Peak - 1) * 100:F1}%");
        return 0;
    }

    private static string Target(string work, string name)
    {
        string path = Path.Combine(work, name);
        if (Directory.Exists(path)) Directory.Delete(path, true);
        Process.Start("sync")!.WaitForExit();
        Thread.Sleep(500);
        return path;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    private static (double Seconds, long Peak) Child(string side, string source, string target)
    {
        if (side == "copy")
        {
            var clock = Stopwatch.StartNew();
            Process.Start("cp", ["-r", source, target])!.WaitForExit();
            Process.Start("sync")!.WaitForExit();
            return (clock.Elapsed.TotalSeconds, 0);
        }
        string host = Environment.ProcessPath!;
        string[] arguments = Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? [typeof(FoldBenchmark).Assembly.Location, ChildCommand, source, target]
            : [ChildCommand, source, target];
        var sw = Stopwatch.StartNew();
        using var process = Process.Start(new ProcessStartInfo(host, arguments) { UseShellExecute = false, RedirectStandardOutput = true })!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        double seconds = sw.Elapsed.TotalSeconds;
        if (process.ExitCode != 0) throw new InvalidOperationException($"fold of {source} exited with {process.ExitCode}: {output}");
        return (seconds, long.Parse(output.Trim(), CultureInfo.InvariantCulture));
    }

    /// <summary>Load, recognize, fold the norm gains, smooth, save durably (with fsync, as mitigate's output): prints the peak RSS.</summary>
    public static int ChildMain(string[] args)
    {
        string source = Path.Combine(args[0], "model.onnx"), target = Path.Combine(args[1], "model.onnx");
        var clock = Stopwatch.StartNew();
        var phases = new List<string>();
        void Phase(string name)
        {
            string live = Environment.GetEnvironmentVariable("FOLD_BENCHMARK_LIVE") == "1" ? $", live {MemoryBenchmark.Mib(GC.GetTotalMemory(true)):F1} MiB, " +
                string.Join(" ", File.ReadAllLines("/proc/self/status").Where(l => l.StartsWith("RssAnon") || l.StartsWith("RssFile")).Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))) : "";
            phases.Add($"{name} {clock.Elapsed.TotalSeconds:F2}s (peak {MemoryBenchmark.Mib(MemoryBenchmark.PeakRss()):F0} MiB, managed {MemoryBenchmark.Mib(GC.GetTotalMemory(false)):F0} MiB{live})");
            clock.Restart();
        }
        using var model = ModelReader.Load(source);
        Phase("load");
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException("not recognized");
        Phase("recognize");
        model.Apply(new NormGainFoldPass(structure));
        Phase("fold-norms");
        structure = StructureRecognizer.Recognize(model).Structure!;
        var ranges = SyntheticRanges(structure);
        Phase("ranges");
        model.Apply(new SmoothQuantPass(structure, ranges, 0.5));
        Phase("smooth");
        ModelWriter.Save(model, target, new SaveOptions { Layout = TensorLayout.External, Durable = true });
        Phase("save");
        Console.Error.WriteLine(string.Join(", ", phases));
        Console.WriteLine(MemoryBenchmark.PeakRss().ToString(CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>The activation ranges SmoothQuant reads, at every norm site's probe point (the sites the pass smooths): channel c has max |x| = 1 + (c mod 17).</summary>
    private static ActivationRanges SyntheticRanges(Structure.Roles.ModelStructure structure)
    {
        var ranges = new ActivationRanges();
        foreach (var site in FoldSites.Discover(structure).Where(s => FoldSiteKinds.NormSites.Contains(s.Kind)))
            ranges.Set(site.ProbePoint, Enumerable.Range(0, site.Channels).Select(i => 1.0 + i % 17).ToArray());
        return ranges;
    }
}

/// <summary>The folding kernel alone: a 512 MiB FLOAT16 weight scaled by rows, by columns and both, streamed to
/// Stream.Null, against copying the same bytes (GB/s of the source).</summary>
internal static class KernelBenchmark
{
    public static int Run()
    {
        const int rows = 8192, columns = 32768;
        var data = new byte[(long)rows * columns * 2];
        new Random(1).NextBytes(data);
        for (int i = 1; i < data.Length; i += 2) data[i] &= 0x3B; // finite fp16 values of moderate magnitude
        var source = new Tensors.ArrayTensor(Tensors.TensorDataType.Float16, [rows, columns], data);
        var r = Enumerable.Range(0, rows).Select(i => 1.0 + i % 7).ToArray();
        var c = Enumerable.Range(0, columns).Select(i => 0.5 + i % 5).ToArray();
        double Time(Tensors.Tensor t)
        {
            t.CopyTo(Stream.Null);
            var sw = Stopwatch.StartNew();
            t.CopyTo(Stream.Null);
            return data.Length / sw.Elapsed.TotalSeconds / 1e9;
        }
        Console.WriteLine($"copy {Time(source):F2} GB/s, rows {Time(ScaledTensor.ScaleRows(source, r)):F2} GB/s, columns {Time(ScaledTensor.ScaleColumns(source, c)):F2} GB/s, both {Time(ScaledTensor.Scale(source, r, c)):F2} GB/s");
        return 0;
    }
}

using System.Diagnostics;
using System.Globalization;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Structure.Recognition;

namespace OnnxOutlierTools.Benchmarks;

/// <summary>Scale of the weight-only-calibration schemes (issue 10 item 8): a generated Llama-shaped FLOAT16 model in external
/// data, loaded, recognized, quantized by a scheme that needs no statistics (int4-rtn, w8a8-dynamic) and saved durably to a
/// new folder, each in a fresh child process (peak = its VmHWM), against <c>cp -r; sync</c> of the folder, medians.</summary>
internal static class QuantizeScaleBenchmark
{
    public const string ChildCommand = "quantize-child";

    public static int Run(string work, string sizes, string schemes, int repetitions, bool keep)
    {
        Console.WriteLine($"quantize + durable save vs cp -r; sync, FLOAT16 weights in external data, {Environment.ProcessorCount} cores, " +
            $"median of {repetitions}, peak = VmHWM of the child");
        Console.WriteLine($"{"model",-10} {"scheme",-14} {"cp+sync s",10} {"quantize s",11} {"ratio",6} {"peak MiB",9}");
        var peaks = new Dictionary<string, List<(double Gb, long Peak)>>();
        foreach (string size in sizes.Split(','))
        {
            double gigabytes = double.Parse(size, CultureInfo.InvariantCulture);
            string source = Path.Combine(work, $"source-{size}g");
            if (!File.Exists(Path.Combine(source, "model.onnx")))
                using (var model = SyntheticDecoder.CreateBenchmarkModel(SyntheticDecoder.BenchmarkConfig(gigabytes), seed: 3))
                    ModelWriter.Save(model, Path.Combine(source, "model.onnx"), new SaveOptions { Layout = TensorLayout.External, Durable = false });
            long bytes = Directory.GetFiles(source).Sum(f => new FileInfo(f).Length);
            var copy = new List<double>();
            for (int r = 0; r < repetitions; r++) copy.Add(Copy(source, Target(work, "copy")));
            foreach (string scheme in schemes.Split(','))
            {
                var runs = new List<(double Seconds, long Peak)>();
                for (int r = 0; r < repetitions; r++) runs.Add(Child(scheme, source, Target(work, "quantized")));
                double c = Median(copy), q = Median(runs.Select(x => x.Seconds).ToList());
                long peak = (long)Median(runs.Select(x => (double)x.Peak).ToList());
                (peaks.TryGetValue(scheme, out var list) ? list : peaks[scheme] = []).Add((bytes / 1e9, peak));
                Console.WriteLine($"{bytes / 1e9,7:F2} GB {scheme,-14} {c,10:F2} {q,11:F2} {q / c,6:F2} {MemoryBenchmark.Mib(peak),9:F0}");
            }
            if (!keep) Directory.Delete(source, recursive: true);
        }
        foreach (var (scheme, list) in peaks.Where(p => p.Value.Count >= 2))
            Console.WriteLine($"{scheme}: peak RSS growth {list[0].Gb:F2} GB -> {list[^1].Gb:F2} GB: {(list[^1].Peak / (double)list[0].Peak - 1) * 100:F1}%");
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

    private static double Median(List<double> values) => values.Order().ToList()[values.Count / 2];

    private static double Copy(string source, string target)
    {
        var clock = Stopwatch.StartNew();
        Process.Start("cp", ["-r", source, target])!.WaitForExit();
        Process.Start("sync")!.WaitForExit();
        return clock.Elapsed.TotalSeconds;
    }

    private static (double Seconds, long Peak) Child(string scheme, string source, string target)
    {
        string host = Environment.ProcessPath!;
        string[] arguments = Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? [typeof(QuantizeScaleBenchmark).Assembly.Location, ChildCommand, scheme, source, target]
            : [ChildCommand, scheme, source, target];
        var sw = Stopwatch.StartNew();
        using var process = Process.Start(new ProcessStartInfo(host, arguments) { UseShellExecute = false, RedirectStandardOutput = true })!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        double seconds = sw.Elapsed.TotalSeconds;
        if (process.ExitCode != 0) throw new InvalidOperationException($"{scheme} on {source} exited with {process.ExitCode}: {output}");
        return (seconds, long.Parse(output.Trim(), CultureInfo.InvariantCulture));
    }

    /// <summary>Load, recognize, quantize, save durably; per-phase peak RSS on stderr; prints the peak RSS.</summary>
    public static int ChildMain(string[] args)
    {
        var scheme = QuantizationSchemes.TryGet(args[0], out var s) ? s : throw new ArgumentException($"unknown scheme {args[0]}");
        if (scheme.Needs != CalibrationNeed.None) throw new ArgumentException($"{args[0]} needs calibration; this benchmark takes weight-only-calibration schemes");
        string source = Path.Combine(args[1], "model.onnx"), target = Path.Combine(args[2], "model.onnx");
        var clock = Stopwatch.StartNew();
        var phases = new List<string>();
        void Phase(string name)
        {
            phases.Add($"{name} {clock.Elapsed.TotalSeconds:F2}s (peak {MemoryBenchmark.Mib(MemoryBenchmark.PeakRss()):F0} MiB, managed {MemoryBenchmark.Mib(GC.GetTotalMemory(false)):F0} MiB)");
            clock.Restart();
        }
        using var model = ModelReader.Load(source);
        Phase("load");
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException("not recognized");
        Phase("recognize");
        scheme.Quantize(new QuantizationInput { Model = model, Structure = structure });
        Phase("quantize");
        ModelWriter.Save(model, target, new SaveOptions { Layout = TensorLayout.External, Durable = true });
        Phase("save");
        Console.Error.WriteLine(string.Join(", ", phases));
        Console.WriteLine(MemoryBenchmark.PeakRss().ToString(CultureInfo.InvariantCulture));
        return 0;
    }
}

using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Onnx.Protobuf;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Benchmarks;

/// <summary>Peak resident memory (VmHWM) of load, inspect, save and save --embed, each in a fresh child
/// process so that one measurement cannot inherit another's heap. Baselines from the same run: an idle
/// child (the runtime alone) and a child that only parses the protobuf (what any protobuf-based reader holds).</summary>
internal static class MemoryBenchmark
{
    public const string ChildCommand = "memory-child";

    public static int Run(string work, string nodeList, long embedMegabytes)
    {
        var nodeCounts = nodeList.Split(',').Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToArray();
        var idle = Measure("idle", "-");
        Console.WriteLine($"peak RSS (VmHWM) per child process; idle child (runtime only): {Mib(idle.PeakBytes):F0} MiB; " +
            "'above idle' subtracts it; 'x parse' = above idle / above idle of a child that only parses the protobuf");
        Console.WriteLine($"{"model",-18} {"file MiB",9} {"operation",-10} {"peak MiB",9} {"above idle",11} {"bytes/node",11} {"x parse",8} {"managed B/node",15}");
        foreach (int nodes in nodeCounts)
        {
            string path = Path.Combine(work, $"graph-{nodes}", "model.onnx");
            using (var model = SyntheticGraph.Create(nodes))
                ModelWriter.Save(model, path, new SaveOptions { Durable = false });
            long fileBytes = new FileInfo(path).Length;
            var parse = Measure("parse", path);
            foreach (string op in new[] { "parse", "load", "inspect", "save", "embed" })
            {
                var m = op == "parse" ? parse : Measure(op, path);
                long above = m.PeakBytes - idle.PeakBytes;
                Console.WriteLine($"{$"{nodes:N0} nodes",-18} {Mib(fileBytes),9:F1} {op,-10} {Mib(m.PeakBytes),9:F0} {Mib(above),11:F0} " +
                    $"{above / (double)nodes,11:F0} {above / (double)(parse.PeakBytes - idle.PeakBytes),8:F2} " +
                    $"{(m.RetainedBytes >= 0 ? (m.RetainedBytes / (double)nodes).ToString("F0", CultureInfo.InvariantCulture) : "-"),15}");
            }
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }

        // --embed of a model whose weights are one large external tensor: peak above idle vs the tensor size.
        string embedSource = Path.Combine(work, "embed", "model.onnx");
        using (var model = SyntheticGraph.Create(1000, embedMegabytes << 20))
            ModelWriter.Save(model, embedSource, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        long dataBytes = new FileInfo(embedSource + ".data").Length;
        var load = Measure("load", embedSource);
        var embed = Measure("embed", embedSource);
        Console.WriteLine($"--embed of a model with one {Mib(dataBytes):F0} MiB external tensor: peak {Mib(embed.PeakBytes):F0} MiB, " +
            $"{Mib(embed.PeakBytes - idle.PeakBytes):F0} MiB above idle = {(embed.PeakBytes - idle.PeakBytes) / (double)dataBytes:F2} x the tensor size " +
            $"(load alone: {Mib(load.PeakBytes - idle.PeakBytes):F0} MiB above idle); managed allocation during the save {Mib(embed.SaveAllocatedBytes):F0} MiB");
        Directory.Delete(Path.GetDirectoryName(embedSource)!, recursive: true);
        return 0;
    }

    internal sealed record Measurement(long PeakBytes, long RetainedBytes, long SaveAllocatedBytes);

    internal static Measurement Measure(string op, string path)
    {
        // Run as the apphost, or as `dotnet Benchmarks.dll` when started that way.
        string host = Environment.ProcessPath!;
        string[] arguments = Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? [typeof(MemoryBenchmark).Assembly.Location, ChildCommand, op, path]
            : [ChildCommand, op, path];
        var start = new ProcessStartInfo(host, arguments)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{op} of {path} exited with {process.ExitCode}: {output}");
        var parts = output.Trim().Split(' ').Select(p => long.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        return new Measurement(parts[0], parts[1], parts[2]);
    }

    /// <summary>Runs one operation and prints "peak-bytes retained-managed-bytes save-allocated-bytes".</summary>
    public static int Child(string[] args)
    {
        string op = args[0], path = args[1];
        long retained = -1, allocated = 0;
        long before = GC.GetTotalMemory(forceFullCollection: true);
        switch (op)
        {
            case "idle":
                break;
            case "parse":
            {
                var bytes = File.ReadAllBytes(path);
                using var input = CodedInputStream.CreateWithLimits(new MemoryStream(bytes, writable: false), int.MaxValue, 200);
                var proto = ModelProto.Parser.ParseFrom(input);
                bytes = null;
                retained = GC.GetTotalMemory(forceFullCollection: true) - before;
                GC.KeepAlive(proto);
                break;
            }
            case "load":
            {
                using var model = ModelReader.Load(path);
                retained = GC.GetTotalMemory(forceFullCollection: true) - before;
                break;
            }
            case "inspect":
            {
                using var model = ModelReader.Load(path, new LoadOptions { RequireExternalData = false });
                var summary = ModelSummary.Create(model);
                retained = GC.GetTotalMemory(forceFullCollection: true) - before;
                GC.KeepAlive(summary);
                break;
            }
            case "save" or "embed":
            {
                using var model = ModelReader.Load(path);
                retained = GC.GetTotalMemory(forceFullCollection: true) - before;
                string output = Path.Combine(Path.GetDirectoryName(path)!, $"out-{op}.onnx");
                long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
                ModelWriter.Save(model, output, new SaveOptions
                {
                    Layout = op == "embed" ? TensorLayout.Embed : TensorLayout.Preserve,
                    Durable = false,
                    Overwrite = true,
                });
                allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
                File.Delete(output);
                if (File.Exists(output + ".data")) File.Delete(output + ".data");
                break;
            }
            default:
                Console.Error.WriteLine($"unknown operation {op}");
                return 2;
        }
        Console.WriteLine($"{PeakRss()} {retained} {allocated}");
        return 0;
    }

    internal static long PeakRss()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        throw new PlatformNotSupportedException("no VmHWM in /proc/self/status (Linux only)");
    }

    internal static double Mib(long bytes) => bytes / (1024.0 * 1024.0);
}

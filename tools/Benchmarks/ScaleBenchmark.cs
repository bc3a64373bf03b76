using System.Diagnostics;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Benchmarks;

/// <summary>How edits, generation and recognition scale with graph size. Each figure is a ratio against a
/// baseline measured in the same run: the same operation on a small graph (edits: per-edit cost on a
/// 70B-shaped graph over a 1-layer one, 1.0 = size-independent), or the same generator or recognizer at a
/// quarter or a sixteenth of the size (linear = the size ratio).</summary>
internal static class ScaleBenchmark
{
    public static int Run(string parts, int largeLayers = 1464)
    {
        var selected = parts.Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        bool All(string p) => selected.Contains("all") || selected.Contains(p);
        if (All("edits")) Edits();
        if (All("generate")) Generate();
        if (All("recognize")) Recognize(largeLayers);
        if (All("embedded-load")) EmbeddedLoad();
        if (All("outputs")) Outputs();
        return 0;
    }

    /// <summary>Llama-3-70B's shape (80 layers, dim 8192, FFN 28672, 64/8 heads, vocab 128256) with generated
    /// FLOAT16 weights (never materialized).</summary>
    private static DecoderConfig Llama70B(int layers) =>
        new(dim: 8192, hiddenDim: 28672, layers: layers, heads: 64, kvHeads: 8, vocabSize: 128256, maxSeqLen: 2048, sharedClassifier: false);

    private static void Edits()
    {
        const int edits = 2000;
        Console.WriteLine($"edits: {edits} of each on a 1-layer graph (baseline) and on the 80-layer Llama-3-70B-shaped graph");
        var small = EditCosts(SyntheticDecoder.CreateBenchmarkModel(Llama70B(1), seed: 1), edits);
        var large = EditCosts(SyntheticDecoder.CreateBenchmarkModel(Llama70B(80), seed: 1), edits);
        Console.WriteLine($"  {"edit",-22} {"1 layer us/op",14} {"80 layers us/op",16} {"ratio",7}");
        foreach (var (name, us) in large)
            Console.WriteLine($"  {name,-22} {small[name],14:F2} {us,16:F2} {us / small[name],7:F1}");
    }

    private static Dictionary<string, double> EditCosts(Model model, int edits)
    {
        using (model)
        {
            var g = model.Graph;
            var anchors = g.Nodes.Where((_, i) => i % 7 == 3).Take(edits).ToList();
            while (anchors.Count < edits) anchors.AddRange(anchors.Take(edits - anchors.Count));
            var result = new Dictionary<string, double>();
            var names = Enumerable.Range(0, edits).Select(i => $"bench_init_{i}").ToArray();
            var existing = g.Nodes.Select(n => n.Outputs[0]!.Name).Where((_, i) => i % 5 == 0).Take(edits).ToArray();
            result[$"FindValue ({g.Nodes.Count} nodes)"] = PerOp(edits, i => g.FindValue(existing[i % existing.Length]));
            result["AddInitializer"] = PerOp(edits, i => g.AddInitializer(names[i], ArrayTensor.Create<float>([1f])));
            var inserted = new Node[edits];
            result["InsertAfter"] = PerOp(edits, i =>
            {
                var anchor = anchors[i];
                inserted[i] = new Node("", "Identity", [anchor.Outputs[0]], [$"bench_probe_{i}"]);
                g.InsertAfter(anchor, inserted[i]);
            });
            result["Remove (node)"] = PerOp(edits, i => g.Remove(inserted[i]));
            result["RemoveInitializer"] = PerOp(edits, i => g.RemoveInitializer(g.FindInitializer(names[i])!));
            // Keys without the node count, so both graphs share them.
            return result.ToDictionary(p => p.Key.StartsWith("FindValue", StringComparison.Ordinal) ? "FindValue" : p.Key, p => p.Value);
        }
    }

    private static double PerOp(int count, Action<int> op)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < count; i++) op(i);
        return sw.Elapsed.TotalMicroseconds / count;
    }

    private static void Generate()
    {
        // Narrow layers (dim 64): the graph, not the (lazily generated) weights, is what is measured.
        static DecoderConfig Narrow(int layers) => new(dim: 64, hiddenDim: 176, layers: layers, heads: 4, kvHeads: 2, vocabSize: 256, maxSeqLen: 128);
        Console.WriteLine("generate: SyntheticDecoder.CreateBenchmarkModel (decomposed Llama graph, generated weights)");
        Time(() => SyntheticDecoder.CreateBenchmarkModel(Narrow(8), seed: 1).Dispose()); // JIT warm-up
        // Best of 3 (one run each where a run takes over 20 s: the quadratic code took minutes).
        double Best(int layers)
        {
            double best = Time(() => SyntheticDecoder.CreateBenchmarkModel(Narrow(layers), seed: 1).Dispose());
            for (int i = 0; i < 2 && best < 20; i++) best = Math.Min(best, Time(() => SyntheticDecoder.CreateBenchmarkModel(Narrow(layers), seed: 1).Dispose()));
            return best;
        }
        double quarter = Best(320);
        double full = Best(1280);
        Console.WriteLine($"  320 layers {quarter:F2} s, 1280 layers {full:F2} s: ratio {full / quarter:F1} (linear = 4)");
    }

    private static void Recognize(int largeLayers)
    {
        Console.WriteLine("recognize: StructureRecognizer.Recognize on decomposed Llama graphs (7B-shaped widths)");
        static DecoderConfig Shape(int layers) => new(dim: 4096, hiddenDim: 11008, layers: layers, heads: 32, kvHeads: 32, vocabSize: 32000, maxSeqLen: 2048, sharedClassifier: false);
        // Wall time and this process's CPU time (the CPU time is steadier on a shared machine); best of 3.
        (double Wall, double Cpu) Once(int layers, out int nodes, out int blocks)
        {
            using var model = SyntheticDecoder.CreateBenchmarkModel(Shape(layers), seed: 1);
            nodes = model.Graph.Nodes.Count;
            StructureRecognizer.Recognize(model); // warm-up on this graph (JIT, lazily built indexes)
            double wall = double.MaxValue, cpu = double.MaxValue;
            blocks = 0;
            for (int i = 0; i < 3; i++)
            {
                var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                var result = StructureRecognizer.Recognize(model);
                wall = Math.Min(wall, sw.Elapsed.TotalSeconds);
                cpu = Math.Min(cpu, (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds);
                blocks = result.Structure?.Blocks.Count ?? 0;
            }
            return (wall, cpu);
        }
        Once(2, out _, out _);
        var small = Once(32, out int smallNodes, out int smallBlocks);
        var large = Once(largeLayers, out int largeNodes, out int largeBlocks);
        Console.WriteLine($"  32 layers ({smallNodes} nodes, {smallBlocks} blocks): {small.Wall * 1000:F0} ms wall, {small.Cpu * 1000:F0} ms CPU");
        Console.WriteLine($"  {largeLayers} layers ({largeNodes} nodes, {largeBlocks} blocks): {large.Wall * 1000:F0} ms wall, {large.Cpu * 1000:F0} ms CPU");
        Console.WriteLine($"  ratio {large.Wall / small.Wall:F1} wall, {large.Cpu / small.Cpu:F1} CPU (linear = {largeNodes / (double)smallNodes:F1})");
    }

    /// <summary>Peak RSS of load and inspect of a model with 1 GiB of embedded weights, against the file size
    /// and an idle child (the runtime alone), each in a fresh child process.</summary>
    private static void EmbeddedLoad()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"onnx-outliers-embedded-{Environment.ProcessId}");
        string path = Path.Combine(folder, "model.onnx");
        try
        {
            using (var model = SyntheticGraph.Create(1000, 1L << 30))
                IO.ModelWriter.Save(model, path, new IO.SaveOptions { Layout = IO.TensorLayout.Embed, Durable = false });
            long file = new FileInfo(path).Length;
            var idle = MemoryBenchmark.Measure("idle", "-");
            Console.WriteLine($"embedded load: a {file / 1048576.0:F0} MiB .onnx with one 1 GiB embedded tensor; idle child {idle.PeakBytes / 1048576.0:F0} MiB");
            foreach (string op in new[] { "load", "inspect" })
            {
                var m = MemoryBenchmark.Measure(op, path);
                Console.WriteLine($"  {op,-8} peak {m.PeakBytes / 1048576.0,6:F0} MiB = {m.PeakBytes / (double)file:F2} x the file " +
                    $"({(m.PeakBytes - idle.PeakBytes) / (double)file:F2} x above idle); managed retained {m.RetainedBytes / 1048576.0:F0} MiB");
            }
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>A probe-like run: 32 outputs of 16 MiB each (Relu of a FLOAT[4M] input), each reduced to its
    /// maximum. Baseline: the copying ModelSession.Run; against it, RunWithoutCopy reducing in place.</summary>
    private static void Outputs()
    {
        const int outputs = 32, elements = 4 << 20;
        string folder = Path.Combine(Path.GetTempPath(), $"onnx-outliers-outputs-{Environment.ProcessId}");
        try
        {
            var b = new GraphBuilder();
            var x = b.Input("x", TensorDataType.Float, elements);
            for (int i = 0; i < outputs; i++) b.Output(b.Op("Relu", b.Op("Add", x, b.Scalar($"c{i}", (float)i))), TensorDataType.Float, elements);
            string path = Path.Combine(folder, "outputs.onnx");
            using (var model = b.ToModel()) IO.ModelWriter.Save(model, path, new IO.SaveOptions { Durable = false });
            using var session = Runtime.SessionFactory.Open(path, Runtime.SessionSettings.CpuUnoptimized);
            var input = Runtime.TensorData.Create("x", Enumerable.Range(0, elements).Select(i => (float)Math.Sin(i)).ToArray(), elements);
            (double Seconds, long Allocated, float Sum) Measure(bool copy)
            {
                var best = (Seconds: double.MaxValue, Allocated: long.MaxValue, Sum: 0f);
                for (int rep = 0; rep < 3; rep++)
                {
                    long before = GC.GetTotalAllocatedBytes(precise: true);
                    var sw = Stopwatch.StartNew();
                    float sum = 0;
                    if (copy)
                        foreach (var o in session.Run([input])) sum += System.Numerics.Tensors.TensorPrimitives.Max(o.AsSpan<float>());
                    else
                    {
                        using var results = session.RunWithoutCopy([input]);
                        foreach (var o in results) sum += System.Numerics.Tensors.TensorPrimitives.Max(o.AsSpan<float>());
                    }
                    double s = sw.Elapsed.TotalSeconds;
                    best = (Math.Min(best.Seconds, s), Math.Min(best.Allocated, GC.GetTotalAllocatedBytes(precise: true) - before), sum);
                }
                return best;
            }
            Measure(copy: true); Measure(copy: false); // warm-up
            var copied = Measure(copy: true);
            var inPlace = Measure(copy: false);
            if (copied.Sum != inPlace.Sum) throw new InvalidOperationException("the two runs disagree");
            Console.WriteLine($"outputs: {outputs} outputs of {elements * 4 >> 20} MiB, each reduced to its max (best of 3)");
            Console.WriteLine($"  Run (copies)        {copied.Seconds * 1000,7:F0} ms, {copied.Allocated / 1048576.0,7:F0} MiB managed allocation");
            Console.WriteLine($"  RunWithoutCopy      {inPlace.Seconds * 1000,7:F0} ms, {inPlace.Allocated / 1048576.0,7:F1} MiB managed allocation " +
                $"(time ratio {inPlace.Seconds / copied.Seconds:F2}, allocation ratio {inPlace.Allocated / (double)copied.Allocated:F4})");
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    private static double Time(Action action)
    {
        var sw = Stopwatch.StartNew();
        action();
        return sw.Elapsed.TotalSeconds;
    }
}

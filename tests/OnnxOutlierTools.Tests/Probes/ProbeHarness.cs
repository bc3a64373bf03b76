using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>One probed model run on ORT: the manifest, every output of the run by name (the probe statistics and,
/// from the dump copy, the probed tensors themselves), and the paths written.</summary>
public sealed record ProbedRun(ProbeManifest Manifest, PassResult Result, IReadOnlyDictionary<string, TensorData> Outputs,
    string ProbedPath, string DumpPath, IReadOnlyList<TensorData> Inputs)
{
    public TensorData this[string name] => Outputs[name];
}

/// <summary>Probes a model, saves it (<c>probed.onnx</c>) and a second copy whose probed tensors (and any
/// <paramref name="extraDumps"/>) are graph outputs too (<c>dump.onnx</c>), and runs the dump copy once with ORT
/// optimizations off: its probe outputs are what the probed model computes, its dumps the reference.</summary>
public static class ProbeHarness
{
    public static ProbedRun ProbeAndRun(string modelPath, TempFolder temp, InputSynthesisOptions inputs, ProbeSettings? settings = null,
        Func<ProbeManifest, ModelStructureHandle, IEnumerable<string>>? extraDumps = null)
    {
        using var model = ModelReader.Load(modelPath);
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException($"{modelPath}: not recognized");
        var pass = new ProbePass(structure, settings);
        var result = model.Apply(pass);
        var manifest = pass.Manifest!;
        string probed = temp.Path("probed", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(probed)!);
        ModelWriter.Save(model, probed, new SaveOptions { Durable = false });

        var graph = model.Graph;
        var dumps = manifest.Points.Select(p => p.Tensor).ToList();
        if (extraDumps is not null) dumps.AddRange(extraDumps(manifest, new ModelStructureHandle(structure.Graph)));
        foreach (string name in dumps.Distinct())
        {
            var value = graph.FindValue(name) ?? throw new InvalidOperationException($"no value '{name}'");
            if (!value.IsGraphOutput) graph.AddOutput(value);
        }
        string dump = temp.Path("dump", "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(dump)!);
        ModelWriter.Save(model, dump, new SaveOptions { Durable = false });

        using var session = SessionFactory.Open(dump, SessionSettings.CpuUnoptimized);
        var feeds = session.SynthesizeInputs(inputs);
        var outputs = session.Run(feeds);
        return new ProbedRun(manifest, result, outputs.ToDictionary(o => o.Name), probed, dump, feeds);
    }

    /// <summary>Runs <paramref name="modelPath"/> (ORT optimizations off) and returns every output by name.</summary>
    public static IReadOnlyDictionary<string, TensorData> Run(string modelPath, IReadOnlyList<TensorData> feeds)
    {
        using var session = SessionFactory.Open(modelPath, SessionSettings.CpuUnoptimized);
        return session.Run(feeds).ToDictionary(o => o.Name);
    }

    /// <summary>The run's statistics merged as the calibration runner merges them (one batch).</summary>
    public static CalibrationStatistics Merge(ProbedRun run, int batch, int sequence)
    {
        var statistics = new CalibrationStatistics(run.Manifest);
        using var session = SessionFactory.Open(run.ProbedPath, SessionSettings.CpuUnoptimized);
        using var outputs = session.RunWithoutCopy(run.Inputs, ProbeOutputDecoder.OutputNames(run.Manifest));
        var ids = run.Inputs.First(i => i.Name == "input_ids").ToInt64Array().Select(v => (int)v).ToArray();
        ProbeOutputDecoder.Merge(statistics, outputs, new BatchTokens(Enumerable.Range(0, batch).ToArray(), sequence, ids));
        return statistics;
    }
}

/// <summary>The graph a structure was recognized in, for tests that name extra tensors to dump.</summary>
public sealed record ModelStructureHandle(Graph Graph);

using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Mitigation.Measurement;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Quantization.Common;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Mitigation.Measurement;

namespace OnnxOutlierTools.Tests.Quantization;

/// <summary>What the quantization tests share: calibrate a model file on windows (the probe pass plus the tensors a scheme
/// names), quantize a fresh load of it with a scheme, save it with external data, and measure it against a reference model
/// on ONNX Runtime CPU (next-token KL, top-1 agreement).</summary>
internal static class QuantizeKit
{
    public static ModelStructure Recognize(Model model) => CalibratedModel.Recognize(model);

    /// <summary>Statistics of <paramref name="modelPath"/> on the windows: every default probe point plus <paramref name="tensors"/>.</summary>
    public static CalibrationStatistics Calibrate(string modelPath, IReadOnlyList<int[]> windows, IReadOnlyList<string>? tensors = null)
    {
        using var model = ModelReader.Load(modelPath);
        var structure = Recognize(model);
        var pass = new ProbePass(structure, new ProbeSettings { Kinds = ProbeGroups.ByName["linear-inputs"], Tensors = tensors ?? [] });
        pass.Run(new PassContext(model));
        using var session = InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        return CalibrationRunner.Run(session, pass.Manifest!, windows, new CalibrationRunOptions { BatchSize = 4 }, structure.Inputs.InputIds?.Name);
    }

    /// <summary>Loads <paramref name="modelPath"/>, quantizes it with <paramref name="scheme"/> and saves it to
    /// <paramref name="folder"/>/model.onnx (external data).</summary>
    public static (string Path, QuantizationResult Result) Quantize(string modelPath, IQuantizationScheme scheme, string folder,
        CalibrationStatistics? statistics = null, QuantizationOptions? options = null, IReadOnlyList<int[]>? windows = null)
    {
        using var model = ModelReader.Load(modelPath);
        var structure = Recognize(model);
        var result = scheme.Quantize(new QuantizationInput { Model = model, Structure = structure, Statistics = statistics, Options = options ?? new(), Windows = windows });
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "model.onnx");
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return (path, result);
    }

    public static DivergenceReport Divergence(string reference, string candidate, IReadOnlyList<int[]> windows)
    {
        var settings = new SessionSettings { Device = ExecutionDevice.Cpu };
        using var a = SessionFactory.Open(reference, settings);
        using var b = SessionFactory.Open(candidate, settings);
        return OutputDivergence.Measure(a, b, windows, new DivergenceOptions { BatchSize = 4 });
    }

    /// <summary>The op types (domain-qualified when not the default) of ORT's optimized graph of <paramref name="model"/>,
    /// saved through SessionOptions.OptimizedModelFilePath at ORT_ENABLE_ALL on the CPU.</summary>
    public static IReadOnlyDictionary<string, int> OptimizedOps(string model, string optimizedPath)
    {
        using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = optimizedPath })
        using (new InferenceSession(model, options)) { }
        using var optimized = ModelReader.Load(optimizedPath);
        return optimized.Graph.Nodes.GroupBy(n => n.IsDefaultDomain ? n.OpType : $"{n.Domain}.{n.OpType}").ToDictionary(g => g.Key, g => g.Count());
    }
}

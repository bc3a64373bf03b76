using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Mitigation.Measurement;

/// <summary>What the mitigation tests share: the planted model, calibration windows of the TinyStories sample, and a real
/// calibration (probe pass, ONNX Runtime, analysis) of a model file, as analyze runs it.</summary>
internal static class CalibratedModel
{
    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
        throw new InvalidOperationException("repository root (OnnxOutlierTools.sln) not found");
    }

    public static string Planted => Path.Combine(RepoRoot(), "onnx-models", "planted-llama-decomposed", "model.onnx");
    public static string PlantedTruth => Path.Combine(RepoRoot(), "onnx-models", "planted-llama-decomposed", "ground-truth.json");
    public static string Text => Fixtures.Path("text", "tinystories-sample.txt");
    public static string Tokenizer => Fixtures.Path("llama2c", "tok512.bin");

    /// <summary>Windows of the TinyStories sample through the calibration layer (BOS prepended as the tokenizer does).</summary>
    public static IReadOnlyList<int[]> Windows(int seqLen = 64, int maxTokens = 512, string? model = null) =>
        CalibrationInputs.Prepare(new CalibrationRequest(model ?? Planted, Text, null, Tokenizer, seqLen, maxTokens, BosMode.Auto, false))
            .Corpus.Windows.Select(w => w.Ids).ToArray();

    public static ModelStructure Recognize(Model model)
    {
        var result = StructureRecognizer.Recognize(model);
        Assert.True(result.Recognized, result.Message);
        return result.Structure!;
    }

    /// <summary>Probes <paramref name="modelPath"/> in memory, runs the windows on ONNX Runtime CPU and analyzes.</summary>
    public static (CalibrationStatistics Stats, AnalysisResult Analysis) Calibrate(string modelPath, IReadOnlyList<int[]> windows)
    {
        using var model = ModelReader.Load(modelPath);
        var structure = Recognize(model);
        var pass = new ProbePass(structure, new ProbeSettings());
        pass.Run(new PassContext(model));
        using var session = InMemoryModel.Open(model, SessionSettings.CpuUnoptimized);
        var stats = CalibrationRunner.Run(session, pass.Manifest!, windows, new CalibrationRunOptions { BatchSize = 4 }, structure.Inputs.InputIds?.Name);
        return (stats, OutlierAnalyzer.Analyze(stats, structure));
    }

    /// <summary>The largest |x| of <paramref name="channel"/> at the point of that kind and block.</summary>
    public static double ChannelMax(CalibrationStatistics stats, ProbeKind kind, int? block, int channel)
    {
        var point = stats.Manifest.Find(kind, block) ?? throw new InvalidOperationException($"no {kind} point in block {block}");
        return stats.Points[point.Id].ChannelAbsMax(channel);
    }
}

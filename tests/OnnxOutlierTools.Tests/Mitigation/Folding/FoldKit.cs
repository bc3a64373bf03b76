using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using Xunit;

namespace OnnxOutlierTools.Tests.Mitigation.Folding;

/// <summary>A fold run: the pass, its result, and the rewritten model's outputs against the unmodified model's on the same
/// inputs (both run by ORT on CPU with graph optimizations off).</summary>
internal sealed record FoldRun(IReadOnlyList<ChannelFoldPass> Passes, IReadOnlyList<PassResult> Results, IReadOnlyList<TensorData> Expected,
    IReadOnlyList<TensorData> Actual, string Output)
{
    public ChannelFoldPass Pass => Passes[^1];
    public PassResult Result => Results[^1];

    public FoldSiteOutcome Outcome(string site) => Pass.Outcomes.Single(o => o.SiteId == site);

    /// <summary>Every output within <c>atol + rtol * max|expected|</c> of the original's (the documented fold tolerance:
    /// fp32 rtol 1e-4, fp16 rtol 1e-2 of the output's peak magnitude).</summary>
    public void AssertEquivalent(double rtol, double atol = 1e-6)
    {
        Assert.Equal(Expected.Count, Actual.Count);
        for (int i = 0; i < Expected.Count; i++)
        {
            var difference = TensorComparison.Compare(Expected[i], Actual[i]);
            Assert.True(difference.ShapeMatches, difference.ToString());
            double peak = Expected[i].ToDoubleArray().Select(Math.Abs).Where(double.IsFinite).DefaultIfEmpty(0).Max();
            Assert.True(difference.NaNMismatches == 0 && difference.MaxAbsDiff <= atol + rtol * peak,
                $"{difference} (peak |x| {peak:G4}, allowed {atol + rtol * peak:G4})");
        }
    }
}

internal static class FoldKit
{
    /// <summary>Runs the original, folds a loaded copy with the pass <paramref name="makePass"/> builds from its recognized
    /// structure, saves it into <paramref name="temp"/>, runs it on the same inputs.</summary>
    public static FoldRun Run(string modelPath, InputSynthesisOptions inputs, Func<ModelStructure, ChannelFoldPass> makePass, TempFolder temp) =>
        Run(modelPath, inputs, s => [makePass(s)], temp);

    /// <summary>Several passes in order, all built from the one structure recognized before the first ran.</summary>
    public static FoldRun Run(string modelPath, InputSynthesisOptions inputs, Func<ModelStructure, ChannelFoldPass[]> makePasses, TempFolder temp,
        Action<OnnxOutlierTools.Ir.Model>? inspect = null)
    {
        var (feeds, expected) = ModelRunner.RunSynthesized(modelPath, inputs, SessionSettings.CpuUnoptimized);
        using var model = ModelReader.Load(modelPath);
        var structure = StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException($"{modelPath}: not recognized");
        var passes = makePasses(structure);
        var results = passes.Select(p => model.Apply(p)).ToArray();
        inspect?.Invoke(model);
        string output = temp.Path("rewritten", Path.GetFileName(modelPath));
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        ModelWriter.Save(model, output, new SaveOptions { Durable = false });
        var actual = ModelRunner.Run(output, feeds, SessionSettings.CpuUnoptimized);
        return new FoldRun(passes, results, expected, actual, output);
    }

    public static ModelStructure Recognize(OnnxOutlierTools.Ir.Model model) =>
        StructureRecognizer.Recognize(model).Structure ?? throw new InvalidOperationException("not recognized");

    /// <summary>Calibration statistics of the linear inputs of <paramref name="modelPath"/> on <paramref name="windows"/>.</summary>
    public static CalibrationStatistics Calibrate(string modelPath, IReadOnlyList<int[]> windows)
    {
        using var probed = ProbedModel.Create(modelPath, new ProbeSettings { Kinds = ProbeGroups.ByName["linear-inputs"] });
        using var session = InMemoryModel.Open(probed.Model, SessionSettings.CpuUnoptimized);
        return CalibrationRunner.Run(session, probed.Manifest, windows, null, probed.Structure.Inputs.InputIds?.Name);
    }

    /// <summary><paramref name="count"/> windows of pseudo-random ids below <paramref name="vocab"/>.</summary>
    public static int[][] RandomWindows(int vocab, int count, int length, int seed = 7)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, length).Select(_ => random.Next(vocab)).ToArray()).ToArray();
    }
}

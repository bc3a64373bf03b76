using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Analysis;

/// <summary>The analysis entry point: pure functions of the calibration statistics and the model's weights (no ONNX
/// Runtime). Without a structure the weight-based parts (super weights, norm gains, W_q channels) are skipped with a note.</summary>
public static class OutlierAnalyzer
{
    public static AnalysisResult Analyze(CalibrationStatistics statistics, ModelStructure? structure, AnalysisSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        settings ??= new AnalysisSettings();
        settings.Validate();
        var context = new AnalysisContext(statistics, structure, settings);
        foreach (var point in statistics.Manifest.Points.Where(p => !statistics.Points.ContainsKey(p.Id)))
            context.Note(NoteKind.MissingPoint, point.Id, "in the manifest but without statistics: not analyzed");
        if (structure is null)
            context.Note(NoteKind.Info, "model", "no model structure: super weights, norm gains and W_q channels not analyzed");

        var (massive, candidates) = MassiveActivationFinder.Find(context);
        var tokens = MassiveActivationTokens.Collect(candidates);
        var result = new AnalysisResult
        {
            Settings = settings,
            Corpus = new CorpusSummary
            {
                Model = statistics.Manifest.Model,
                Tokens = statistics.Tokens,
                Windows = statistics.Windows,
                AboveThreshold = statistics.Manifest.Settings.AboveThreshold,
                TopK = statistics.Manifest.Settings.TopK,
                ProbePoints = context.Points.Count,
            },
            MassiveActivations = massive,
            MassiveActivationTokens = tokens,
            Fp16Range = Fp16RangeCheck.Find(context),
            ChannelOutliers = ChannelOutlierFinder.Find(context),
            NormGainOutliers = NormGainAnalysis.Find(context),
            OutlierTriggeringChannels = TriggeringChannelFinder.Find(context),
            AttentionSinks = AttentionSinkFinder.Find(context, tokens),
            StreamProfile = StreamProfile.Build(context),
        };
        context.Note(NoteKind.Info, "statistics", "the probes reduce in fp32 whatever the model's dtype: x^2 and x^4 sums do not overflow here even where fp16 would");
        return result with { Notes = context.Notes.ToList() };
    }
}

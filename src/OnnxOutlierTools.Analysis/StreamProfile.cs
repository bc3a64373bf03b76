namespace OnnxOutlierTools.Analysis;

/// <summary>The residual stream per point: top-3 |x| and the median (Sun et al.'s per-layer plot).</summary>
internal static class StreamProfile
{
    public static IReadOnlyList<StreamProfilePoint> Build(AnalysisContext context) =>
        context.Points
            .Where(p => AnalysisContext.IsAny(p, context.Settings.MassiveKinds) && context.Stats(p).AttentionMass is null && context.Stats(p).Tokens > 0)
            .Select(p => new StreamProfilePoint
            {
                Point = AnalysisContext.Ref(p),
                Top = context.Stats(p).Top.Take(3).Select(e => double.IsFinite(e.Abs) ? e.Abs : double.MaxValue).ToList(),
                Median = context.Stats(p).TokenMedianAbs.Median,
            })
            .ToList();
}

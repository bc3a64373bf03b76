using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Analysis;

/// <summary>Attention sinks (Sun et al. 2024): heads whose mean probability mass on one key position reaches the
/// threshold, with the tokens seen at that position.</summary>
internal static class AttentionSinkFinder
{
    public static IReadOnlyList<AttentionSink> Find(AnalysisContext context, IReadOnlyList<MassiveActivationToken> massiveTokens)
    {
        var sinks = new List<AttentionSink>();
        var byPosition = TokensByPosition(context);
        var massivePositions = massiveTokens.SelectMany(t => t.Positions).ToHashSet();
        int positions = 0;
        foreach (var point in context.Points)
        {
            var stats = context.Stats(point);
            if (stats.AttentionMass is not { } mass) continue;
            positions = Math.Max(positions, mass[0].Length);
            for (int h = 0; h < mass.Length; h++)
                for (int p = 0; p < mass[h].Length; p++)
                {
                    double m = stats.MeanAttentionMass(h, p);
                    if (!(m >= context.Settings.SinkMass)) continue;
                    sinks.Add(new AttentionSink
                    {
                        Point = AnalysisContext.Ref(point), Head = h, Position = p, Mass = m,
                        Tokens = byPosition.GetValueOrDefault(p) ?? [],
                        CarriesMassiveActivation = massivePositions.Contains(p),
                    });
                }
        }
        if (positions > 0)
            context.Note(NoteKind.Info, "attention", $"attention mass is measured on the first {positions} key positions only (a sink further on is not seen), averaged over every query");
        return sinks;
    }

    /// <summary>The token ids seen at each position among every point's kept tokens (distinct window/position), most
    /// frequent first.</summary>
    private static Dictionary<int, IReadOnlyList<PositionToken>> TokensByPosition(AnalysisContext context)
    {
        var refs = new HashSet<TokenRef>();
        foreach (var stats in context.Statistics.Points.Values)
        {
            foreach (var t in stats.LargestTokens) refs.Add(t.Token);
            foreach (var t in stats.HighestRatioTokens) refs.Add(t.Token);
            foreach (var e in stats.Top) refs.Add(e.Token);
        }
        return refs.GroupBy(r => r.Position).ToDictionary(g => g.Key, g => (IReadOnlyList<PositionToken>)g
            .GroupBy(r => r.TokenId)
            .Select(ids => new PositionToken(ids.Key, context.TokenTexts.GetValueOrDefault(ids.Key), ids.Count()))
            .OrderByDescending(t => t.Count).ThenBy(t => t.TokenId)
            .ToList());
    }
}

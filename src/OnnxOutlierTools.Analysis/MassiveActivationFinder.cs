using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Analysis;

/// <summary>Massive activations on the residual stream: every kept value (top-k entries and the per-token maxima) that
/// meets the Sun et al. rule or the relative rule, grouped by channel (one channel carried through many blocks by the
/// residual connection is one massive activation).</summary>
internal static class MassiveActivationFinder
{
    /// <summary>One qualifying value before grouping.</summary>
    internal sealed record Candidate(ProbePoint Point, int Channel, TokenRef Token, MassiveActivationHit Hit);

    /// <summary>The massive activations (largest first) and every qualifying value they were grouped from.</summary>
    public static (IReadOnlyList<MassiveActivation> Massive, IReadOnlyList<Candidate> Candidates) Find(AnalysisContext context)
    {
        var candidates = context.Points
            .Where(p => AnalysisContext.IsAny(p, context.Settings.MassiveKinds) && context.Stats(p).AttentionMass is null)
            .SelectMany(p => Candidates(context, p))
            .ToList();
        var massive = candidates
            .GroupBy(c => c.Channel)
            .Select(g => Group(context, g.Key, g.ToList()))
            .OrderByDescending(m => m.Peak.Abs)
            .ToList();
        return (massive, candidates);
    }

    /// <summary>The qualifying values of one point, one per (token, channel).</summary>
    internal static IEnumerable<Candidate> Candidates(AnalysisContext context, ProbePoint point)
    {
        var stats = context.Stats(point);
        double pointMedian = stats.TokenMedianAbs.Median;
        var summaries = KeptSummaries(stats);
        var found = new Dictionary<(TokenRef, int), Candidate>();

        // Top entries give the signed value and any channel (a token may carry two massive channels; the per-token
        // argmax names only one); their median is the token's own where the token was kept, else the point's.
        foreach (var entry in stats.Top)
        {
            bool own = summaries.TryGetValue(entry.Token, out var summary);
            double median = own ? summary!.MedianAbs : pointMedian;
            var hit = Hit(context, point, entry.Token, entry.Abs, entry.Value, median, own ? MedianSource.Token : MedianSource.Point);
            if (hit is not null) found.TryAdd((entry.Token, entry.Channel), new(point, entry.Channel, entry.Token, hit));
        }
        foreach (var summary in summaries.Values)
        {
            if (found.ContainsKey((summary.Token, summary.ArgMaxChannel))) continue;
            var hit = Hit(context, point, summary.Token, summary.MaxAbs, null, summary.MedianAbs, MedianSource.Token);
            if (hit is not null) found[(summary.Token, summary.ArgMaxChannel)] = new(point, summary.ArgMaxChannel, summary.Token, hit);
        }
        return found.Values;
    }

    /// <summary>The tokens a point kept a summary of (largest max and largest ratio), by token.</summary>
    internal static Dictionary<TokenRef, TokenSummary> KeptSummaries(PointStatistics stats)
    {
        var byToken = new Dictionary<TokenRef, TokenSummary>();
        foreach (var t in stats.LargestTokens.Concat(stats.HighestRatioTokens)) byToken.TryAdd(t.Token, t);
        return byToken;
    }

    /// <summary>The rule a value meets, or null.</summary>
    internal static MassiveActivationRule? RuleOf(AnalysisSettings settings, double abs, double median)
    {
        double ratio = Ratio(abs, median);
        if (abs > settings.MassiveAbsolute && ratio >= settings.MassiveAbsoluteRatio) return MassiveActivationRule.Absolute;
        if (abs >= settings.MassiveRelativeMinAbs && abs > 0 && ratio >= settings.MassiveRelativeRatio) return MassiveActivationRule.Relative;
        return null;
    }

    internal static double Ratio(double abs, double median) => median > 0 ? abs / median : abs > 0 ? double.PositiveInfinity : 0;

    private static MassiveActivationHit? Hit(AnalysisContext context, ProbePoint point, TokenRef token, double abs, double? value, double median, MedianSource source)
    {
        if (!double.IsFinite(abs)) return null; // non-finite values are the fp16-range finding's business
        var rule = RuleOf(context.Settings, abs, median);
        if (rule is null) return null;
        double ratio = Ratio(abs, median);
        return new MassiveActivationHit
        {
            Point = AnalysisContext.Ref(point),
            Token = context.Token(token),
            Abs = abs,
            Value = value,
            Median = median,
            MedianSource = source,
            Ratio = double.IsFinite(ratio) ? ratio : null,
            Rule = rule.Value,
        };
    }

    private static MassiveActivation Group(AnalysisContext context, int channel, List<Candidate> candidates)
    {
        var perPoint = candidates
            .GroupBy(c => c.Point.Id)
            .Select(g => g.MaxBy(c => c.Hit.Abs)!)
            .OrderBy(c => context.OrderOf(c.Point))
            .ToList();
        var tokens = candidates
            .GroupBy(c => (c.Token.Window, c.Token.Position))
            .Select(g => g.MaxBy(c => c.Hit.Abs)!)
            .OrderByDescending(c => c.Hit.Abs)
            .Select(c => c.Hit.Token)
            .ToList();
        var peak = candidates.MaxBy(c => c.Hit.Abs)!;
        var emergence = perPoint.First(c => c.Hit.Abs >= context.Settings.EmergenceFraction * peak.Hit.Abs);
        return new MassiveActivation
        {
            Channel = channel,
            Rule = candidates.Any(c => c.Hit.Rule == MassiveActivationRule.Absolute) ? MassiveActivationRule.Absolute : MassiveActivationRule.Relative,
            Peak = peak.Hit,
            Blocks = perPoint.Where(c => c.Point.Block is not null).Select(c => c.Point.Block!.Value).Distinct().Order().ToList(),
            Hits = perPoint.Select(c => c.Hit).ToList(),
            Tokens = tokens,
            Birth = BirthTracer.Trace(context, channel, emergence),
        };
    }
}

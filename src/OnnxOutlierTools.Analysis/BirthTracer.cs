using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Analysis;

/// <summary>Where a massive activation is born (SCIENCE.md, seed paper arXiv 2505.21670): the first stream point that
/// carries it, whether the FFN of that block wrote it (first present after the FFN's residual add and massive at the
/// down-projection input y6) or the attention did, and for an FFN birth the terms y6_i * W_down[i, c] that write
/// channel c and the super weight (Yu et al. 2024) among them.</summary>
internal static class BirthTracer
{
    public static MassiveActivationBirth Trace(AnalysisContext context, int channel, MassiveActivationFinder.Candidate first)
    {
        var point = first.Point;
        var token = first.Token;
        if (point.Kind == ProbeKind.Embedding || point.Block is null)
            return new MassiveActivationBirth
            {
                FirstPoint = AnalysisContext.Ref(point), Place = BirthPlace.Embedding, Token = first.Hit.Token,
                TermsSkipped = "present in the embedding output: no down projection writes it",
            };

        int block = point.Block.Value;
        var role = context.Block(block);
        var down = role?.Ffn is { } ffn ? context.PointFor(ffn.DownInput.Name, ProbeKind.DownInput, block) : context.PointFor(ProbeKind.DownInput, block);
        var place = PlaceOf(context, point, down, role);
        var birth = new MassiveActivationBirth
        {
            EmergenceBlock = block, FirstPoint = AnalysisContext.Ref(point), Place = place, Token = first.Hit.Token,
            DownInput = down is null ? null : AnalysisContext.Ref(down),
        };
        if (down is null)
            return birth with { TermsSkipped = $"block {block}'s down-projection input was not probed" };

        var downStats = context.Stats(down);
        birth = WithDownInputToken(context, birth, downStats, token);
        if (place is BirthPlace.Attention)
            return birth with { TermsSkipped = $"already present at {point.Id}, before block {block}'s FFN: the FFN does not write it" };
        if (role?.Ffn is not { } writer)
            return birth with
            {
                TermsSkipped = context.Structure is null ? "no model structure given: weights not read"
                    : role?.Moe is not null ? $"block {block}'s FFN is a mixture of experts: per-expert down projections are not traced"
                    : $"block {block} has no recognized FFN down projection",
            };

        var weight = context.DownWeight(block, writer.Down, out var problem);
        if (weight is null) return birth with { TermsSkipped = problem };
        if (weight.Rows != downStats.Channels || channel >= weight.Columns)
            return birth with { TermsSkipped = $"{weight.Name} is [{weight.Rows}, {weight.Columns}] in [in, out] terms; the down input has {downStats.Channels} channels and the massive channel is {channel}" };

        var terms = Terms(downStats, weight, channel, token);
        var listed = terms.Take(context.Settings.DownProjectionTerms).Where((t, i) => i == 0 || t.Share >= context.Settings.MinTermShare).ToList();
        return birth with { Terms = listed, SuperWeight = listed.Count == 0 ? null : Super(block, writer.Down, weight, listed[0].Neuron, channel) };
    }

    /// <summary>Which sublayer wrote it: compared with the down-projection input in graph order (the FFN's residual add
    /// comes after it, the attention's residual sum before it).</summary>
    private static BirthPlace PlaceOf(AnalysisContext context, ProbePoint first, ProbePoint? down, BlockRole? role)
    {
        if (role?.ParallelResidual == true) return BirthPlace.AttentionOrFfn;
        if (down is not null) return context.OrderOf(first) > context.OrderOf(down) ? BirthPlace.Ffn : BirthPlace.Attention;
        if (role?.AttentionResidual is { } mid && mid.Value?.Name == first.Tensor) return BirthPlace.Attention;
        // Without the down input: an earlier stream point of the same block (the attention residual sum) did not carry it.
        bool earlier = context.Points.Any(p => p.Block == first.Block && AnalysisContext.IsAny(p, context.Settings.MassiveKinds) && context.OrderOf(p) < context.OrderOf(first));
        return earlier ? BirthPlace.Ffn : BirthPlace.Unknown;
    }

    /// <summary>The traced token's largest |y6| (its kept summary, else its top entries) and whether it is itself massive.</summary>
    private static MassiveActivationBirth WithDownInputToken(AnalysisContext context, MassiveActivationBirth birth, PointStatistics down, TokenRef token)
    {
        double abs, median;
        int neuron;
        if (MassiveActivationFinder.KeptSummaries(down).TryGetValue(token, out var summary))
            (abs, median, neuron) = (summary.MaxAbs, summary.MedianAbs, summary.ArgMaxChannel);
        else if (down.Top.Where(e => e.Token == token).MaxBy(e => e.Abs) is { } entry)
            (abs, median, neuron) = (entry.Abs, down.TokenMedianAbs.Median, entry.Channel);
        else
            return birth;
        double ratio = MassiveActivationFinder.Ratio(abs, median);
        return birth with
        {
            DownInputMaxAbs = abs,
            DownInputArgMax = neuron,
            DownInputRatio = double.IsFinite(ratio) ? ratio : null,
            MassiveAtDownInput = abs >= context.Settings.MassiveRelativeMinAbs && ratio >= context.Settings.MassiveRelativeRatio,
        };
    }

    /// <summary>Every neuron's term y6_i * W_down[i, c], largest |term| first. y6_i is the neuron's value on the token where
    /// the down input's top-k list has it, else the neuron's extreme over all tokens (the larger of |max| and |min|, with
    /// its sign): an upper bound of what it contributes on that token.</summary>
    internal static List<DownProjectionTerm> Terms(PointStatistics down, WeightMatrix weight, int channel, TokenRef token)
    {
        var onToken = new Dictionary<int, double>();
        foreach (var e in down.Top.Where(e => e.Token == token)) onToken.TryAdd(e.Channel, e.Value);
        var raw = new List<(int Neuron, double Activation, ActivationSource Source, double Weight)>(weight.Rows);
        for (int i = 0; i < weight.Rows; i++)
        {
            if (onToken.TryGetValue(i, out double y))
                raw.Add((i, y, ActivationSource.Token, weight[i, channel]));
            else if (double.IsFinite(down.ChannelMax[i]) && double.IsFinite(down.ChannelMin[i]))
            {
                double extreme = Math.Abs(down.ChannelMax[i]) >= Math.Abs(down.ChannelMin[i]) ? down.ChannelMax[i] : down.ChannelMin[i];
                raw.Add((i, extreme, ActivationSource.ChannelMax, weight[i, channel]));
            }
        }
        double total = raw.Sum(t => Math.Abs(t.Activation * t.Weight));
        return raw
            .Select(t => new DownProjectionTerm
            {
                Neuron = t.Neuron, Activation = t.Activation, ActivationSource = t.Source, Weight = t.Weight,
                Term = t.Activation * t.Weight, Share = total > 0 ? Math.Abs(t.Activation * t.Weight) / total : 0,
            })
            .OrderByDescending(t => Math.Abs(t.Term))
            .ToList();
    }

    private static SuperWeight Super(int block, LinearRole down, WeightMatrix weight, int row, int column)
    {
        double w = weight[row, column], median = weight.MedianAbs();
        return new SuperWeight
        {
            Block = block, Tensor = down.Weight.Name, Layout = down.Layout, Row = row, Column = column, Weight = w,
            MedianAbsWeight = median, Ratio = median > 0 ? Math.Abs(w) / median : 0,
            LargestInMatrix = Math.Abs(w) >= weight.MaxAbs(),
        };
    }
}

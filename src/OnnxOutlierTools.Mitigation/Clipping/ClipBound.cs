using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Mitigation.Clipping;

/// <summary>How the bound of a clipped neuron was obtained from the statistics.</summary>
public enum ClipBoundSource
{
    /// <summary>The largest |x| of the neuron on a token without the massive activation, found in the point's top-k list
    /// (every |x| not listed is at most the list's smallest, so it is the exact maximum over those tokens).</summary>
    TopList,
    /// <summary>An upper bound of that maximum: the square root of the neuron's sum of x^2 over every token less the
    /// squares of its listed massive-activation entries, plus the sum's worst-case fp32 rounding (no single other token
    /// can exceed it).</summary>
    SumOfSquares,
    /// <summary>An upper bound of that maximum: the top-k list's smallest |x| (the neuron has no listed entry on another token).</summary>
    TopListFloor,
}

/// <summary>The largest |x| a down-projection input neuron takes on tokens that do not carry the massive activation, or
/// the tightest upper bound of it the statistics give. The probes keep per-channel extremes over all tokens only, so the
/// massive token's own value has to be taken out: through the top-k list, which holds the largest entries of the whole
/// point (the massive ones first), and through the neuron's sum of squares.</summary>
public static class ClipBound
{
    public static (double Bound, ClipBoundSource Source) OtherTokens(PointStatistics stats, int neuron, IReadOnlySet<(int Window, int Position)> massiveTokens)
    {
        ArgumentNullException.ThrowIfNull(stats);
        ArgumentNullException.ThrowIfNull(massiveTokens);
        if (neuron < 0 || neuron >= stats.Channels) throw new ArgumentOutOfRangeException(nameof(neuron), neuron, $"the point has {stats.Channels} channels");
        bool IsMassive(TopEntry e) => massiveTokens.Contains((e.Token.Window, e.Token.Position));
        var entries = stats.Top.Where(e => e.Channel == neuron).ToList();
        // The probes sum x^2 in fp32: after taking the massive squares out, what is left may be pure rounding of a sum
        // dominated by them (600^2 swallows 0.01^2). Adding the sum's worst-case fp32 error (n u sum, n terms, u = 2^-24)
        // keeps it an upper bound; the list's floor is usually the tighter one then.
        double sum = stats.ChannelSumSquares[neuron];
        double squares = sum - entries.Where(IsMassive).Sum(e => e.Value * e.Value) + sum * (stats.Tokens + 1) * Math.ScaleB(1, -24);
        double l2 = Math.Sqrt(Math.Max(0, squares));
        var other = entries.Where(e => !IsMassive(e)).Select(e => e.Abs).DefaultIfEmpty(double.NaN).Max();
        if (!double.IsNaN(other)) return (other, ClipBoundSource.TopList); // exact, and never above the l2 bound
        // A list shorter than k holds every element of the point: the neuron has no value on another token.
        if (stats.Top.Count < stats.TopK) return (0, ClipBoundSource.TopList);
        double floor = stats.Top.Min(e => e.Abs);
        return floor < l2 ? (floor, ClipBoundSource.TopListFloor) : (l2, ClipBoundSource.SumOfSquares);
    }
}

using OnnxOutlierTools.Mitigation.Clipping;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Tests.Analysis;

namespace OnnxOutlierTools.Tests.Mitigation.Clipping;

/// <summary>The bound of a clipped neuron on hand-made statistics whose every value the test knows: the float64 maximum
/// over the tokens without the massive activation is the reference.</summary>
public class ClipBoundTests
{
    private static (PointStatistics Stats, double[,,] X) Point(Action<double[,,]> plant, int topK = 32)
    {
        var s = new SyntheticStatistics(seed: 3, topK: topK);
        var x = s.Noise(48, 0.5);
        plant(x);
        s.Add("block1.down-input", ProbeKind.DownInput, 1, x);
        var stats = s.Build();
        return (stats.Points["block1.down-input"], x);
    }

    private static double OtherMax(double[,,] x, int neuron, HashSet<(int, int)> massive)
    {
        double max = 0;
        for (int b = 0; b < x.GetLength(0); b++)
            for (int t = 0; t < x.GetLength(1); t++)
                if (!massive.Contains((b, t))) max = Math.Max(max, Math.Abs(x[b, t, neuron]));
        return max;
    }

    [Fact]
    public void OtherTokens_NeuronListedOnAnOrdinaryToken_IsTheExactMaximum()
    {
        // Neuron 5: 600 on both BOS tokens, and 9.5 on one ordinary token (large enough to be in the top-k list).
        var (stats, x) = Point(x => { x[0, 0, 5] = 600; x[1, 0, 5] = -580; x[1, 3, 5] = 9.5; });
        var massive = new HashSet<(int, int)> { (0, 0), (1, 0) };
        var (bound, source) = ClipBound.OtherTokens(stats, 5, massive);
        Assert.Equal(ClipBoundSource.TopList, source);
        Assert.Equal(OtherMax(x, 5, massive), bound, 1e-5);
        Assert.Equal(9.5, bound, 1e-5);
    }

    [Fact]
    public void OtherTokens_NeuronOnlyListedOnMassiveTokens_IsAnUpperBoundOfTheMaximum()
    {
        // Neuron 7 is tiny elsewhere: not in the top list except on BOS; the bound is sqrt of its other squares (or the
        // list's floor), never below the true maximum and far below the massive value.
        var (stats, x) = Point(x =>
        {
            x[0, 0, 7] = 600; x[1, 0, 7] = 450;
            for (int b = 0; b < 2; b++) for (int t = 1; t < 8; t++) x[b, t, 7] *= 0.01;
        });
        var massive = new HashSet<(int, int)> { (0, 0), (1, 0) };
        var (bound, source) = ClipBound.OtherTokens(stats, 7, massive);
        Assert.NotEqual(ClipBoundSource.TopList, source);
        double reference = OtherMax(x, 7, massive);
        Assert.True(bound >= reference - 1e-6, $"{bound} < {reference}");
        Assert.True(bound < 1, $"{bound} ({source})");
    }
}

using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Tests.Analysis;

/// <summary>Massive activations, the tokens that carry them, the fp16 range and the stream profile, on hand-made
/// statistics of a residual stream (no model needed).</summary>
public class MassiveActivationTests
{
    private const int C = 64;

    /// <summary>embedding, block0..2 residual: Gaussian noise (sigma 0.1), with <paramref name="plant"/> applied per block.</summary>
    private static (CalibrationStatistics Stats, Dictionary<int, double[,,]> Residuals) Stream(Action<int, double[,,]> plant, Action<SyntheticStatistics>? configure = null)
    {
        var s = new SyntheticStatistics();
        s.Add("embedding", ProbeKind.Embedding, null, s.Noise(C, 0.1));
        var residuals = new Dictionary<int, double[,,]>();
        for (int b = 0; b < 3; b++)
        {
            var x = s.Noise(C, 0.1);
            plant(b, x);
            residuals[b] = x;
            s.Add($"block{b}.residual", ProbeKind.Residual, b, x);
        }
        configure?.Invoke(s);
        return (s.Build(), residuals);
    }

    [Fact]
    public void Analyze_PlantedBosChannel_OneMassiveActivationAcrossBlocks()
    {
        var (stats, x) = Stream((b, x) =>
        {
            if (b >= 1) { x[0, 0, 7] = 500; x[1, 0, 7] = -480; }
        });
        var result = OutlierAnalyzer.Analyze(stats, null);

        var ma = Assert.Single(result.MassiveActivations);
        Assert.Equal(7, ma.Channel);
        Assert.Equal(MassiveActivationRule.Absolute, ma.Rule);
        Assert.Equal([1, 2], ma.Blocks);
        Assert.Equal(["block1.residual", "block2.residual"], ma.Hits.Select(h => h.Point.Id));
        Assert.Equal([(0, 0), (1, 0)], ma.Tokens.Select(t => (t.Window, t.Position)));
        Assert.All(ma.Tokens, t => Assert.Equal((1, "<s>"), (t.TokenId, t.Text)));
        // float64 reference: |x| over the token's own upper median |x|.
        Assert.Equal(500, ma.Peak.Abs, 3);
        Assert.Equal(500, ma.Peak.Value!.Value, 3);
        Assert.Equal(MedianSource.Token, ma.Peak.MedianSource);
        double median = SyntheticStatistics.TokenMedian(x[ma.Peak.Point.Block!.Value], 0, 0);
        Assert.Equal(median, ma.Peak.Median, 1e-6);
        Assert.Equal(500 / median, ma.Peak.Ratio!.Value, 500 / median * 1e-5);
        Assert.All(ma.Hits.Where(h => h.Token.Window == 1), h => Assert.Equal(-480, h.Value!.Value, 3));
        // No down input, no structure: the birth is located, not explained.
        Assert.Equal(1, ma.Birth.EmergenceBlock);
        Assert.Equal("block1.residual", ma.Birth.FirstPoint.Id);
        Assert.Equal(BirthPlace.Unknown, ma.Birth.Place);
        Assert.Empty(ma.Birth.Terms);
        Assert.NotNull(ma.Birth.TermsSkipped);

        var token = Assert.Single(result.MassiveActivationTokens);
        Assert.Equal((1, "<s>", TokenCategory.FirstPosition, 2), (token.TokenId, token.Text, token.Category, token.Count));
        Assert.Equal([0], token.Positions);
        Assert.Equal([7], token.Channels);
        Assert.Empty(result.Fp16Range);
    }

    [Fact]
    public void Analyze_SmallRatioBelowThreshold_NothingReported()
    {
        // Near miss: just under 100x the token's median (the planted value lifts the median a little).
        var (stats, x) = Stream((b, x) =>
        {
            if (b == 1) { x[0, 3, 20] = 0; x[0, 3, 20] = 98 * SyntheticStatistics.TokenMedian(x, 0, 3); }
        });
        double ratio = Math.Abs(x[1][0, 3, 20]) / SyntheticStatistics.TokenMedian(x[1], 0, 3);
        Assert.InRange(ratio, 80, 99.9);
        var result = OutlierAnalyzer.Analyze(stats, null);
        Assert.Empty(result.MassiveActivations);
        Assert.Empty(result.MassiveActivationTokens);
    }

    [Fact]
    public void Analyze_RelativeRule_FindsSmallScaleActivationAndCanBeTurnedOff()
    {
        // 60 is below Sun et al.'s absolute 100, but ~900x its token's median: the relative rule (100x) holds.
        var (stats, x) = Stream((b, x) => { if (b == 2) x[1, 5, 30] = 60; });
        var ma = Assert.Single(OutlierAnalyzer.Analyze(stats, null).MassiveActivations);
        Assert.Equal((30, MassiveActivationRule.Relative, 2), (ma.Channel, ma.Rule, ma.Birth.EmergenceBlock));
        Assert.Equal(60 / SyntheticStatistics.TokenMedian(x[2], 1, 5), ma.Peak.Ratio!.Value, 1e-2);
        var token = Assert.Single(OutlierAnalyzer.Analyze(stats, null).MassiveActivationTokens);
        Assert.Equal((46, ".", TokenCategory.Delimiter), (token.TokenId, token.Text, token.Category));

        var absoluteOnly = new AnalysisSettings { MassiveRelativeRatio = 1e30 };
        Assert.Empty(OutlierAnalyzer.Analyze(stats, null, absoluteOnly).MassiveActivations);
        // And the absolute rule's own thresholds are the settings' values: 60 passes an absolute threshold of 50.
        var lower = new AnalysisSettings { MassiveRelativeRatio = 1e30, MassiveAbsolute = 50, MassiveAbsoluteRatio = 500 };
        Assert.Equal(MassiveActivationRule.Absolute, Assert.Single(OutlierAnalyzer.Analyze(stats, null, lower).MassiveActivations).Rule);
    }

    [Fact]
    public void Analyze_TwoChannelsOnOneToken_BothFoundFromTheTopList()
    {
        // LLaMA-2-7B carries two massive channels on BOS; the per-token argmax names one, the top-k list both.
        var (stats, _) = Stream((b, x) => { x[0, 0, 11] = 300; x[0, 0, 40] = -250; });
        var result = OutlierAnalyzer.Analyze(stats, null);
        Assert.Equal([11, 40], result.MassiveActivations.Select(m => m.Channel).Order());
        Assert.All(result.MassiveActivations, m => Assert.Equal([0, 1, 2], m.Blocks));
        Assert.Equal(-250, result.MassiveActivations.Single(m => m.Channel == 40).Peak.Value!.Value, 3);
        Assert.Equal([11, 40], Assert.Single(result.MassiveActivationTokens).Channels);
    }

    [Fact]
    public void Analyze_EmbeddingCarriesIt_BirthIsTheEmbedding()
    {
        var s = new SyntheticStatistics();
        var e = s.Noise(C, 0.1);
        e[0, 0, 3] = 200;
        s.Add("embedding", ProbeKind.Embedding, null, e);
        var r = s.Noise(C, 0.1);
        r[0, 0, 3] = 210;
        s.Add("block0.residual", ProbeKind.Residual, 0, r);
        var ma = Assert.Single(OutlierAnalyzer.Analyze(s.Build(), null).MassiveActivations);
        Assert.Equal((BirthPlace.Embedding, (int?)null, "embedding"), (ma.Birth.Place, ma.Birth.EmergenceBlock, ma.Birth.FirstPoint.Id));
        Assert.Equal([0], ma.Blocks);
        Assert.Equal(2, ma.Hits.Count);
    }

    [Fact]
    public void Analyze_SmallPrecursorBeforeTheJump_EmergesWhereItReachesHalfThePeak()
    {
        // MiniLM's shape: a relative-rule hit of 3 in the embedding (and 8 after block 0, a normalized copy), then 220.
        var s = new SyntheticStatistics();
        var e = s.Noise(C, 0.01);
        e[0, 0, 9] = 3;
        s.Add("embedding", ProbeKind.Embedding, null, e);
        var r0 = s.Noise(C, 0.01);
        r0[0, 0, 9] = 8;
        s.Add("block0.residual", ProbeKind.Residual, 0, r0);
        var r1 = s.Noise(C, 0.1);
        r1[0, 0, 9] = 220;
        s.Add("block1.residual", ProbeKind.Residual, 1, r1);
        var ma = Assert.Single(OutlierAnalyzer.Analyze(s.Build(), null).MassiveActivations);
        Assert.Equal(["embedding", "block0.residual", "block1.residual"], ma.Hits.Select(h => h.Point.Id));
        Assert.Equal([MassiveActivationRule.Relative, MassiveActivationRule.Relative, MassiveActivationRule.Absolute], ma.Hits.Select(h => h.Rule));
        Assert.Equal((1, "block1.residual"), (ma.Birth.EmergenceBlock, ma.Birth.FirstPoint.Id));
        // With a fraction that 3/220 reaches, the embedding is where it emerges.
        var early = Assert.Single(OutlierAnalyzer.Analyze(s.Build(), null, new AnalysisSettings { EmergenceFraction = 0.01 }).MassiveActivations);
        Assert.Equal(BirthPlace.Embedding, early.Birth.Place);
    }

    [Fact]
    public void Analyze_Fp16Range_OverflowAndNearReportedOnlyWithinTheMargin()
    {
        var (stats, _) = Stream((b, x) =>
        {
            if (b == 0) x[0, 2, 9] = 70000;     // above 65504
            if (b == 1) x[1, 4, 12] = -20000;   // within 4x (>= 16376)
            if (b == 2) x[0, 6, 1] = 16000;     // near miss: 65504 / 16000 = 4.09
        });
        var result = OutlierAnalyzer.Analyze(stats, null);
        Assert.Equal(2, result.Fp16Range.Count);
        var over = result.Fp16Range.Single(f => f.Point.Id == "block0.residual");
        Assert.Equal((Fp16RangeLevel.Overflow, 9, 0, 2), (over.Level, over.Channel, over.Token!.Window, over.Token.Position));
        Assert.Equal(70000, over.MaxAbs, 3);
        Assert.Equal(65504.0 / 70000, over.Headroom, 6);
        var near = result.Fp16Range.Single(f => f.Point.Id == "block1.residual");
        Assert.Equal((Fp16RangeLevel.Near, 12), (near.Level, near.Channel));
        Assert.Equal(65504.0 / 20000, near.Headroom, 6);
    }

    [Fact]
    public void Analyze_StreamProfile_TopThreeAndMedianPerPoint()
    {
        var (stats, x) = Stream((b, x) => { x[0, 1, 2] = 9; x[1, 1, 2] = 8; x[0, 7, 5] = -7; });
        var profile = OutlierAnalyzer.Analyze(stats, null).StreamProfile;
        Assert.Equal(["embedding", "block0.residual", "block1.residual", "block2.residual"], profile.Select(p => p.Point.Id));
        var block1 = profile.Single(p => p.Point.Id == "block1.residual");
        Assert.Equal([9, 8, 7], block1.Top.Select(v => Math.Round(v, 4)));
        // The median of the 16 per-token medians (log histogram: within 1.1%).
        var medians = Enumerable.Range(0, 16).Select(r => SyntheticStatistics.TokenMedian(x[1], r / 8, r % 8)).Order().ToArray();
        Assert.InRange(block1.Median, medians[7] / 1.012, medians[7] * 1.012);
    }

    [Fact]
    public void Analyze_PureNoise_ReportsNothing()
    {
        var (stats, _) = Stream((_, _) => { }, s => s.Add("block0.ffn-input", ProbeKind.FfnInput, 0, s.Noise(C, 0.3)));
        var result = OutlierAnalyzer.Analyze(stats, null);
        Assert.Empty(result.MassiveActivations);
        Assert.Empty(result.MassiveActivationTokens);
        Assert.Empty(result.Fp16Range);
        Assert.Empty(result.ChannelOutliers);
        Assert.Empty(result.AttentionSinks);
        Assert.Equal(5, result.Corpus.ProbePoints);
        Assert.Equal(16, result.Corpus.Tokens);
    }

    [Fact]
    public void Analyze_Settings_AreValidatedWithTheirName()
    {
        var (stats, _) = Stream((_, _) => { });
        var ex = Assert.Throws<ArgumentException>(() => OutlierAnalyzer.Analyze(stats, null, new AnalysisSettings { SinkMass = 1.5 }));
        Assert.Contains("SinkMass", ex.Message);
    }
}

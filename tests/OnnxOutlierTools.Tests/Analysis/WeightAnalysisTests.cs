using System.Text.Json;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Inspection;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Analysis;

/// <summary>The weight-aware analyses on onnx-models/tiny-llama with planted weights (edited in memory): the birth of a
/// massive activation at the down projection and its super weight, norm-gain outliers and their overlap, outlier-
/// triggering W_q channels; and attention sinks and channel-wise outliers on hand-made statistics.</summary>
public class WeightAnalysisTests
{
    private const int Neuron = 13, Channel = 5;

    /// <summary>W[row, column] in [in, out] terms, whatever the stored layout.</summary>
    private static int Index(LinearRole linear, int row, int column) =>
        linear.Layout == WeightLayout.InOut ? row * (int)linear.OutFeatures + column : column * (int)linear.InFeatures + row;

    /// <summary>Plants W_down[13, 5] = 3 in block 1; y6 neuron 13 = 40 on both BOS tokens at block 1's down input,
    /// channel 5 = 120 on them from block 1's residual on (and at its attention residual sum when <paramref name="fromAttention"/>).</summary>
    private static (CalibrationStatistics Stats, TinyLlama Model) PlantedMassive(bool fromAttention = false) => PlantedMassive(fromAttention, out _);

    private static (CalibrationStatistics Stats, TinyLlama Model) PlantedMassive(bool fromAttention, out double[,,] downInput)
    {
        double[,,]? captured = null;
        var tiny = new TinyLlama();
        var down = tiny.Structure.Blocks[1].Ffn!.Down;
        var w = TinyLlama.Read(down.Weight);
        w[Index(down, Neuron, Channel)] = 3f;
        w[Index(down, 50, Channel)] = 0.5f;
        tiny.Write(down.Weight, w);

        var s = new SyntheticStatistics();
        tiny.AddPoints(s, (kind, block) =>
        {
            if (block != 1 || kind is ProbeKind.AttentionInput or ProbeKind.FfnInput) return null;
            if (kind == ProbeKind.DownInput)
            {
                var y6 = s.Noise(176, 0.05);
                y6[0, 0, Neuron] = 40; y6[1, 0, Neuron] = 40;
                y6[0, 0, 50] = 35; // a large neuron with a smaller weight to channel 5: the second term
                return captured = y6;
            }
            if (kind == ProbeKind.ResidualSum && !fromAttention) return null;
            var x = s.Noise(64, 0.1);
            x[0, 0, Channel] = 120; x[1, 0, Channel] = 118;
            return x;
        });
        downInput = captured!;
        return (s.Build(), tiny);
    }

    [Fact]
    public void Analyze_PlantedSuperWeight_BirthAtDownProjectionWithTheWeight()
    {
        var (stats, tiny) = PlantedMassive(false, out var y6);
        using var _ = tiny;
        var result = OutlierAnalyzer.Analyze(stats, tiny.Structure);

        var ma = Assert.Single(result.MassiveActivations);
        Assert.Equal(Channel, ma.Channel);
        Assert.Equal([1], ma.Blocks);
        Assert.Equal(["block1.residual"], ma.Hits.Select(h => h.Point.Id));
        var birth = ma.Birth;
        Assert.Equal((1, BirthPlace.Ffn, "block1.residual", "block1.down-input"), (birth.EmergenceBlock, birth.Place, birth.FirstPoint.Id, birth.DownInput!.Id));
        Assert.Equal((0, 0), (birth.Token.Window, birth.Token.Position));
        Assert.True(birth.MassiveAtDownInput);
        Assert.Equal(Neuron, birth.DownInputArgMax);
        Assert.Equal(40, birth.DownInputMaxAbs!.Value, 4);
        Assert.Null(birth.TermsSkipped);

        // float64 reference of the terms: y6 on the token where the top list has it, else the neuron's extreme.
        var down = tiny.Structure.Blocks[1].Ffn!.Down;
        var w = TinyLlama.Read(down.Weight);
        double W(int i) => w[Index(down, i, Channel)];
        var first = birth.Terms[0];
        Assert.Equal((Neuron, ActivationSource.Token), (first.Neuron, first.ActivationSource));
        Assert.Equal(40, first.Activation, 4);
        Assert.Equal(3, first.Weight, 6);
        Assert.Equal(120, first.Term, 3);
        var second = birth.Terms[1];
        Assert.Equal((50, ActivationSource.Token), (second.Neuron, second.ActivationSource));
        Assert.Equal(35 * 0.5, second.Term, 4);
        Assert.True(first.Share > 0.5, $"share {first.Share}");
        // The share is of sum_i |y6_i W[i, 5]|, y6_i on the token where the top-32 |y6| has it, else the neuron's largest
        // |y6| over all tokens (float64 reference from the fed tensor).
        var top = Enumerable.Range(0, 16 * 176).Select(k => (Row: k / 176, Neuron: k % 176, Abs: Math.Abs((double)(float)y6[k / 176 / 8, k / 176 % 8, k % 176])))
            .OrderByDescending(e => e.Abs).Take(32).Where(e => e.Row == 0).ToDictionary(e => e.Neuron, e => e.Abs);
        double Y(int i) => top.TryGetValue(i, out double v) ? v : Enumerable.Range(0, 16).Max(r => Math.Abs((double)(float)y6[r / 8, r % 8, i]));
        double total = Enumerable.Range(0, 176).Sum(i => Math.Abs(Y(i) * W(i)));
        Assert.Equal(120 / total, first.Share, 1e-6);
        Assert.InRange(birth.Terms.Count, 2, 5);
        Assert.All(birth.Terms, t => Assert.True(t.Share >= 0.01, $"neuron {t.Neuron} share {t.Share}"));
        Assert.Equal(birth.Terms.OrderByDescending(t => Math.Abs(t.Term)).Select(t => t.Neuron), birth.Terms.Select(t => t.Neuron));

        var sw = birth.SuperWeight!;
        Assert.Equal((1, Neuron, Channel, down.Weight.Name), (sw.Block, sw.Row, sw.Column, sw.Tensor));
        Assert.Equal(3, sw.Weight, 6);
        var sorted = w.Select(v => Math.Abs((double)v)).Order().ToArray();
        Assert.Equal(sorted[sorted.Length / 2], sw.MedianAbsWeight, 9);
        Assert.Equal(3 / sorted[sorted.Length / 2], sw.Ratio, 6);
        Assert.True(sw.LargestInMatrix);

        // report.json: serializable with the project's options, enums as camelCase strings.
        string json = JsonOutput.Serialize(result);
        using var doc = JsonDocument.Parse(json);
        var birthJson = doc.RootElement.GetProperty("massiveActivations")[0].GetProperty("birth");
        Assert.Equal("ffn", birthJson.GetProperty("place").GetString());
        Assert.Equal(Neuron, birthJson.GetProperty("superWeight").GetProperty("row").GetInt32());
        Assert.Equal(1000, doc.RootElement.GetProperty("settings").GetProperty("massiveAbsoluteRatio").GetDouble());
        Assert.Equal("absolute", doc.RootElement.GetProperty("massiveActivations")[0].GetProperty("rule").GetString());
    }

    [Theory]
    [InlineData(TensorDataType.Float16)]
    [InlineData(TensorDataType.BFloat16)]
    public void Analyze_HalfPrecisionDownWeight_SuperWeightReadAsFloat(TensorDataType dtype)
    {
        var (stats, tiny) = PlantedMassive();
        using var _ = tiny;
        var down = tiny.Structure.Blocks[1].Ffn!.Down;
        var w = TinyLlama.Read(down.Weight);
        w[Index(down, Neuron, Channel)] = 3.140625f; // exact in fp16 and bf16
        long[] dims = down.Weight.ConstValue!.Dims.ToArray();
        Tensor tensor = dtype == TensorDataType.Float16
            ? ArrayTensor.Create<Half>(w.Select(v => (Half)v).ToArray(), dims)
            : ArrayTensor.Create<BFloat16>(w.Select(v => (BFloat16)v).ToArray(), dims);
        down.Weight.Graph.SetInitializerData(down.Weight, tensor);
        var expected = tensor.ToSingleArray();

        var sw = Assert.Single(OutlierAnalyzer.Analyze(stats, tiny.Structure).MassiveActivations).Birth.SuperWeight!;
        Assert.Equal((1, Neuron, Channel, 3.140625), (sw.Block, sw.Row, sw.Column, sw.Weight));
        var sorted = expected.Select(v => Math.Abs((double)v)).Order().ToArray();
        Assert.Equal(sorted[sorted.Length / 2], sw.MedianAbsWeight, 12);
    }

    [Fact]
    public void Analyze_PresentBeforeTheFfn_BirthIsAttentionWithoutTerms()
    {
        var (stats, tiny) = PlantedMassive(fromAttention: true);
        using var _ = tiny;
        var ma = Assert.Single(OutlierAnalyzer.Analyze(stats, tiny.Structure).MassiveActivations);
        Assert.Equal((BirthPlace.Attention, "block1.residual-sum.attention"), (ma.Birth.Place, ma.Birth.FirstPoint.Id));
        Assert.Equal(["block1.residual-sum.attention", "block1.residual"], ma.Hits.Select(h => h.Point.Id));
        Assert.Empty(ma.Birth.Terms);
        Assert.Null(ma.Birth.SuperWeight);
        Assert.Contains("before block 1's FFN", ma.Birth.TermsSkipped);
    }

    [Fact]
    public void Analyze_QuantizedDownProjection_TermsSkippedAndSaid()
    {
        var (stats, tiny) = PlantedMassive();
        using var _ = tiny;
        tiny.EditBlock(1, b => b with { Ffn = b.Ffn! with { Down = b.Ffn.Down with { Quantized = true } } });
        var result = OutlierAnalyzer.Analyze(stats, tiny.Structure);
        var birth = Assert.Single(result.MassiveActivations).Birth;
        Assert.Equal(BirthPlace.Ffn, birth.Place);
        Assert.True(birth.MassiveAtDownInput);
        Assert.Empty(birth.Terms);
        Assert.Contains("quantized", birth.TermsSkipped);
        Assert.Contains(result.Notes, n => n.Kind == NoteKind.QuantizedWeight && n.Subject == "block 1 ffn.down");
    }

    [Fact]
    public void Analyze_NormGains_OutlierChannelWithOverlapAndNearMissLeftOut()
    {
        using var tiny = new TinyLlama();
        foreach (var norm in tiny.Structure.Blocks.SelectMany(b => b.Norms.Select(n => n.Norm)).Append(tiny.Structure.FinalNorm!))
            tiny.Write(norm.Gain, Enumerable.Repeat(1f, 64).ToArray());
        var gain = Enumerable.Repeat(1f, 64).ToArray();
        gain[4] = 10f;   // 10x the median: an outlier
        gain[6] = -4.9f; // 4.9x: a near miss of the 5x default
        var attentionNorm = tiny.Structure.Blocks[0].AttentionNorm!;
        tiny.Write(attentionNorm.Gain, gain);

        var s = new SyntheticStatistics();
        tiny.AddPoints(s, (kind, block) =>
        {
            if (kind != ProbeKind.AttentionInput || block != 0) return null;
            var x = s.Noise(64, 0.3);
            for (int r = 0; r < 16; r++) x[r / 8, r % 8, 4] = 8 + 0.1 * x[r / 8, r % 8, 4];
            return x;
        });
        var result = OutlierAnalyzer.Analyze(s.Build(), tiny.Structure);

        var g = Assert.Single(result.NormGainOutliers);
        Assert.Equal(((int?)0, "preAttention", 4, attentionNorm.Gain.Name), (g.Block, g.Norm, g.Channel, g.GainTensor));
        Assert.Equal((10.0, 10.0, 1.0, 10.0), (g.Gain, g.EffectiveGain, g.MedianAbsGain, g.Ratio));
        Assert.Equal("block0.attention-input", g.OutputPoint!.Id);
        Assert.True(g.OutputOutlier);
        var channel = Assert.Single(result.ChannelOutliers);
        Assert.Equal(("block0.attention-input", 4, ChannelOutlierKind.Persistent), (channel.Point.Id, channel.Channel, channel.Kind));
        Assert.Equal(channel.Ratio, g.OutputRatio!.Value, 9);
        Assert.Equal(1.0, channel.FractionAbove); // 8 > 6 on every token

        // Gemma's (1 + gamma): the initializer holds gain - 1. As a plain gain the same bytes have median 0: no ratio.
        var stored = gain.Select(v => v - 1f).ToArray();
        tiny.Write(attentionNorm.Gain, stored);
        var plain = OutlierAnalyzer.Analyze(s.Build(), tiny.Structure);
        Assert.Empty(plain.NormGainOutliers);
        Assert.Contains(plain.Notes, n => n.Subject == "block 0 preAttention norm" && n.Message.Contains("median |gain|"));
        tiny.EditBlock(0, b => b with { AttentionNorm = b.AttentionNorm! with { GainForm = NormGainForm.OnePlusGain } });
        var gemma = Assert.Single(OutlierAnalyzer.Analyze(s.Build(), tiny.Structure).NormGainOutliers);
        Assert.Equal((4, 9.0, 10.0, 10.0, NormGainForm.OnePlusGain), (gemma.Channel, gemma.Gain, gemma.EffectiveGain, gemma.Ratio, gemma.GainForm));
    }

    [Fact]
    public void Analyze_QueryProjection_TriggeringChannelsFromWeightsAndActivations()
    {
        using var tiny = new TinyLlama();
        var q = tiny.Structure.Blocks[0].Attention!.Query!;
        var w = TinyLlama.Read(q.Weight);
        for (int c = 0; c < 64; c++) { w[Index(q, 2, c)] *= 20; w[Index(q, 8, c)] *= 3; } // row 8: a near miss
        tiny.Write(q.Weight, w);
        double[,,]? input = null;
        var s = new SyntheticStatistics();
        tiny.AddPoints(s, (kind, block) =>
        {
            if (kind != ProbeKind.AttentionInput || block != 0) return null;
            input = s.Noise(64, 0.3);
            for (int r = 0; r < 16; r++) input[r / 8, r % 8, 10] *= 30; // channel 10: large input, ordinary row
            return input;
        });
        var result = OutlierAnalyzer.Analyze(s.Build(), tiny.Structure);

        // float64 reference: score_j = max_t |X_tj| * ||W_q[j, :]||, against the upper median over j.
        var score = new double[64];
        for (int j = 0; j < 64; j++)
        {
            double max = 0, norm = 0;
            for (int r = 0; r < 16; r++) max = Math.Max(max, Math.Abs((double)(float)input![r / 8, r % 8, j]));
            for (int c = 0; c < 64; c++) norm += (double)w[Index(q, j, c)] * w[Index(q, j, c)];
            score[j] = max * Math.Sqrt(norm);
        }
        double median = score.Order().ToArray()[32], total = score.Sum();
        var expected = Enumerable.Range(0, 64).Where(j => score[j] / median >= 10).OrderByDescending(j => score[j]).ToArray();
        Assert.Equal(new[] { 2, 10 }.Order(), expected.Order());
        Assert.InRange(score[8] / median, 1, 9.99);

        var found = result.OutlierTriggeringChannels.Where(t => t.Block == 0).ToList();
        Assert.Equal(expected, found.Select(t => t.Channel));
        Assert.All(found, t =>
        {
            Assert.True(t.QuerySlice);
            Assert.Equal(q.Weight.Name, t.Weight);
            Assert.Equal("block0.attention-input", t.InputPoint.Id);
            Assert.Equal(score[t.Channel], t.Score, score[t.Channel] * 1e-6);
            Assert.Equal(score[t.Channel] / total, t.Share, 1e-6);
            Assert.Equal(score[t.Channel] / median, t.RatioToMedian, score[t.Channel] / median * 1e-6);
        });
        // Block 1's W_q is random and its input noise: nothing dominates.
        Assert.DoesNotContain(result.OutlierTriggeringChannels, t => t.Block == 1);
    }

    [Fact]
    public void Analyze_ChannelOutliers_PersistentAndTokenSpecificWithNearMissLeftOut()
    {
        var s = new SyntheticStatistics { AboveThreshold = 25 }; // nothing crosses it: the kurtosis decides
        var x = s.Noise(64, 0.3);
        for (int r = 0; r < 16; r++) x[r / 8, r % 8, 3] = 8 + 0.2 * x[r / 8, r % 8, 3]; // every token: persistent
        x[1, 6, 9] = 20;                                                                  // one token: token-specific
        double MaxOf(int c) => Enumerable.Range(0, 16).Max(r => Math.Abs((double)(float)x[r / 8, r % 8, c]));
        double MedianMax() => Enumerable.Range(0, 64).Select(MaxOf).Order().ToArray()[32];
        x[0, 2, 11] = 0;
        x[0, 2, 11] = Math.Max(MaxOf(11), 9.3 * MedianMax()); // a near miss of 10x
        s.Add("block0.ffn-input", ProbeKind.FfnInput, 0, x, readBy: ["gate.weight", "up.weight"]);
        var result = OutlierAnalyzer.Analyze(s.Build(), null);

        double median = MedianMax();
        Assert.InRange(MaxOf(11) / median, 8, 9.99);
        Assert.Equal([3, 9], result.ChannelOutliers.Select(o => o.Channel).Order());
        var persistent = result.ChannelOutliers.Single(o => o.Channel == 3);
        var specific = result.ChannelOutliers.Single(o => o.Channel == 9);
        Assert.Equal((ChannelOutlierKind.Persistent, ChannelOutlierKind.TokenSpecific), (persistent.Kind, specific.Kind));
        Assert.Equal(["gate.weight", "up.weight"], persistent.ReadBy);
        foreach (var o in result.ChannelOutliers)
        {
            Assert.Equal(MaxOf(o.Channel), o.MaxAbs, 5);
            Assert.Equal(median, o.MedianChannelMaxAbs, 6);
            Assert.Equal(MaxOf(o.Channel) / median, o.Ratio, 1e-4);
            Assert.Equal(0, o.FractionAbove);
            var col = Enumerable.Range(0, 16).Select(r => (double)(float)x[r / 8, r % 8, o.Channel]).ToArray();
            double m2 = col.Average(v => v * v), m4 = col.Average(v => v * v * v * v);
            Assert.Equal(m4 / (m2 * m2), o.Kurtosis, 1e-3 * m4 / (m2 * m2));
        }
        Assert.InRange(specific.Kurtosis, 10, 16);
    }

    [Fact]
    public void Analyze_AliasedPoint_ScannedForTheLinearInputItAlsoIs()
    {
        // Post-norm: block 0's output (a norm output) is block 1's attention input, probed once.
        var s = new SyntheticStatistics();
        double[,,] WithOutlier()
        {
            var x = s.Noise(64, 0.3);
            for (int r = 0; r < 16; r++) x[r / 8, r % 8, 17] = 9;
            return x;
        }
        s.Add("block0.residual", ProbeKind.Residual, 0, WithOutlier(), alsoAs: [new ProbeRoleRef("block1.attention-input", ProbeKind.AttentionInput, 1, "attentionNorm.output")]);
        s.Add("block1.residual", ProbeKind.Residual, 1, WithOutlier()); // a stream point only: not a linear input
        var outlier = Assert.Single(OutlierAnalyzer.Analyze(s.Build(), null).ChannelOutliers);
        Assert.Equal(("block0.residual", 17, ChannelOutlierKind.Persistent), (outlier.Point.Id, outlier.Channel, outlier.Kind));
    }

    [Fact]
    public void Analyze_AttentionSinks_HeadsAboveThresholdWithTheirToken()
    {
        var s = new SyntheticStatistics();
        var r = s.Noise(64, 0.1);
        r[0, 0, 7] = 300; r[1, 0, 7] = 300;
        s.Add("block0.residual", ProbeKind.Residual, 0, r);
        double[] Uniform() => Enumerable.Repeat(1.0 / 8, 8).ToArray();
        var mass = Enumerable.Range(0, 4).Select(_ => Uniform()).ToArray();
        mass[2][0] = 0.8;   // a BOS sink
        mass[1][0] = 0.45;  // a near miss
        mass[3][5] = 0.6;   // a sink on "."
        s.AddAttention("block0.attention", 0, mass);
        var result = OutlierAnalyzer.Analyze(s.Build(), null);

        Assert.Equal([(2, 0), (3, 5)], result.AttentionSinks.Select(k => (k.Head, k.Position)));
        var bos = result.AttentionSinks[0];
        Assert.Equal(0.8, bos.Mass, 6);
        Assert.Equal([new PositionToken(1, "<s>", 2)], bos.Tokens);
        Assert.True(bos.CarriesMassiveActivation);
        var dot = result.AttentionSinks[1];
        Assert.Equal(0.6, dot.Mass, 6);
        Assert.Equal([new PositionToken(46, ".", 2)], dot.Tokens);
        Assert.False(dot.CarriesMassiveActivation);
    }
}

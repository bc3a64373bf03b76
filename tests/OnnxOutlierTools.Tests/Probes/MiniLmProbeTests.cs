using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>all-MiniLM-L6-v2 (post-norm BERT): the residual sums before each LayerNorm are probed, the massive activation
/// (channel 99 at [CLS], about 220 after block 0's FFN residual add; SCIENCE.md section 4) is in block 0's FFN residual
/// sum and not in the normalized block output, and the norm outputs are probed once for both of their roles.</summary>
public sealed class MiniLmProbeTests
{
    [Fact]
    public void PostNormSums_CarryTheMassiveActivation_AtClsChannel99()
    {
        using var temp = new TempFolder("probe-minilm");
        var vocab = File.ReadAllLines(MiniLm.VocabPath);
        long[] ids = "[CLS] the cat sat on the mat and looked at the dog . [SEP]".Split(' ').Select(w => (long)Array.IndexOf(vocab, w)).ToArray();
        Assert.DoesNotContain(-1L, ids);
        var settings = new ProbeSettings { TopK = 8, AboveThreshold = 6f };
        var inputs = new InputSynthesisOptions
        {
            Dims = new Dictionary<string, long> { ["batch"] = 1, ["sequence"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator>
            {
                ["input_ids"] = (input, dims) => TensorData.Create(input.Name, ids, dims),
                ["token_type_ids"] = InputSynthesizer.Fill(0),
            },
        };
        var run = ProbeHarness.ProbeAndRun(MiniLm.ModelPath, temp, inputs, settings);
        var manifest = run.Manifest;

        // Post-norm: the attention norm's output is block i's attention residual and FFN input; the FFN norm's output is
        // block i's output and block i+1's attention input: one point each, the other role an alias.
        var residual0 = manifest["block0.residual"]!;
        Assert.True(residual0.Is(ProbeKind.AttentionInput, 1));
        Assert.Same(residual0, manifest["block1.attention-input"]);
        Assert.Equal(6, manifest.Points.Count(p => p.Kind == ProbeKind.ResidualSum && p.Id.EndsWith(".ffn", StringComparison.Ordinal)));
        Assert.Equal(6, manifest.Points.Count(p => p.Kind == ProbeKind.AttentionProbabilities));
        Assert.Equal(manifest.Points.Count, manifest.Points.Select(p => p.Tensor).Distinct().Count());

        var sum = manifest["block0.residual-sum.ffn"]!;
        Assert.Equal(384, sum.Channels);
        Assert.Equal(3, residual0.ReadBy.Count); // block 1's q, k and v weights
        Assert.Single(manifest["block0.ffn-input"]!.ReadBy);
        var tokenMax = HostStatistics.Floats(run, sum, ProbeStatistic.TokenMaxAbs);
        var argMax = run[sum.Outputs[ProbeStatistic.TokenArgMaxChannel]].ToInt64Array();
        Assert.Equal(99, argMax[0]);
        Assert.InRange(tokenMax[0], 150, 300);
        var top = HostStatistics.Floats(run, sum, ProbeStatistic.TopKAbs);
        long topIndex = run[sum.Outputs[ProbeStatistic.TopKIndex]].ToInt64Array()[0];
        Assert.Equal((0L, 99L), (topIndex / 384, topIndex % 384));
        Assert.Equal(tokenMax[0], top[0]);
        // After the post-LayerNorm it is small again (SCIENCE.md: ~7.8).
        Assert.InRange(HostStatistics.Floats(run, residual0, ProbeStatistic.TokenMaxAbs)[0], 1, 20);

        foreach (var point in manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities))
            HostStatistics.AssertActivation(run, point, settings);
    }

    [Fact]
    public void SampledMedian_IsNearTheExactMedian_AndTheExactMedianMatchesTheHost()
    {
        using var temp = new TempFolder("probe-minilm-median");
        using var temp2 = new TempFolder("probe-minilm-sampled");
        var vocab = File.ReadAllLines(MiniLm.VocabPath);
        long[] ids = "[CLS] a man is playing a guitar on the street , and people listen . [SEP]".Split(' ').Select(w => (long)Array.IndexOf(vocab, w)).ToArray();
        Assert.DoesNotContain(-1L, ids);
        var inputs = new InputSynthesisOptions
        {
            Dims = new Dictionary<string, long> { ["batch"] = 1, ["sequence"] = ids.Length },
            Generators = new Dictionary<string, InputGenerator>
            {
                ["input_ids"] = (input, dims) => TensorData.Create(input.Name, ids, dims),
                ["token_type_ids"] = InputSynthesizer.Fill(0),
            },
        };
        var exactSettings = new ProbeSettings { TopK = 4, MedianChannels = 0 };
        var exact = ProbeHarness.ProbeAndRun(MiniLm.ModelPath, temp, inputs, exactSettings);
        var sampled = ProbeHarness.ProbeAndRun(MiniLm.ModelPath, temp2, inputs, exactSettings with { MedianChannels = 128 });
        foreach (var point in exact.Manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities))
        {
            HostStatistics.AssertActivation(exact, point, exactSettings);
            // 384 channels, stride 3: 128 of them. A median is robust, so on real hidden states the sample's stays close
            // (a loose bound: the sample median's standard error on Gaussian-like rows is about 10%).
            var full = HostStatistics.Floats(exact, point, ProbeStatistic.TokenMedianAbs);
            var part = HostStatistics.Floats(sampled, sampled.Manifest[point.Id]!, ProbeStatistic.TokenMedianAbs);
            for (int r = 0; r < full.Length; r++)
                Assert.InRange(part[r] / full[r], 0.67, 1.5);
        }
    }
}

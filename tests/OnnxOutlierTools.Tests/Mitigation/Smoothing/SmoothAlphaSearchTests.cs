using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Mitigation.Smoothing;

/// <summary>The alpha search: its error against an independent float64 computation of the formula, the choice on an
/// activation with an outlier channel, ties, the grid rules and bad input.</summary>
public sealed class SmoothAlphaSearchTests
{
    private static SiteLinear Linear(string name, float[] values, int rows, int columns, WeightLayout layout) =>
        new(name, ArrayTensor.Create(values, rows, columns), layout);

    /// <summary>sum over linears of ||Q(X/s) Q(diag(s) W) - X W||^2 / ||X W||^2 in float64, from the definitions.</summary>
    private static double ReferenceError(double[,] x, IReadOnlyList<double[,]> weightsInOut, double alpha, ActivationScheme scheme)
    {
        int n = x.GetLength(0), channels = x.GetLength(1);
        var xMax = new double[channels];
        var wMax = new double[channels];
        for (int i = 0; i < n; i++) for (int j = 0; j < channels; j++) xMax[j] = Math.Max(xMax[j], Math.Abs(x[i, j]));
        foreach (var w in weightsInOut)
            for (int j = 0; j < channels; j++) for (int o = 0; o < w.GetLength(1); o++) wMax[j] = Math.Max(wMax[j], Math.Abs(w[j, o]));
        var s = new double[channels];
        for (int j = 0; j < channels; j++) s[j] = Math.Pow(Math.Max(xMax[j], 1e-5), alpha) / Math.Pow(Math.Max(wMax[j], 1e-5), 1 - alpha);
        var xq = new double[n, channels];
        double tensorScale = 0;
        for (int j = 0; j < channels; j++) tensorScale = Math.Max(tensorScale, xMax[j] / s[j] / 127);
        for (int i = 0; i < n; i++)
        {
            double rowScale = 0;
            for (int j = 0; j < channels; j++) rowScale = Math.Max(rowScale, Math.Abs(x[i, j] / s[j]) / 127);
            double scale = scheme == ActivationScheme.PerTokenDynamic ? rowScale : tensorScale;
            for (int j = 0; j < channels; j++) xq[i, j] = FakeQuantTests.ReferenceQuantize(x[i, j] / s[j], scale);
        }
        double total = 0;
        foreach (var w in weightsInOut)
        {
            int outputs = w.GetLength(1);
            var wq = new double[channels, outputs];
            for (int o = 0; o < outputs; o++)
            {
                double scale = 0;
                for (int j = 0; j < channels; j++) scale = Math.Max(scale, Math.Abs(s[j] * w[j, o]) / 127);
                for (int j = 0; j < channels; j++) wq[j, o] = FakeQuantTests.ReferenceQuantize(s[j] * w[j, o], scale);
            }
            double num = 0, den = 0;
            for (int i = 0; i < n; i++)
                for (int o = 0; o < outputs; o++)
                {
                    double y = 0, yq = 0;
                    for (int j = 0; j < channels; j++) { y += x[i, j] * w[j, o]; yq += xq[i, j] * wq[j, o]; }
                    num += (yq - y) * (yq - y);
                    den += y * y;
                }
            total += num / den;
        }
        return total;
    }

    private static double[,] Matrix(float[] values, int rows, int columns)
    {
        var m = new double[rows, columns];
        for (int r = 0; r < rows; r++) for (int c = 0; c < columns; c++) m[r, c] = values[r * columns + c];
        return m;
    }

    [Theory]
    [InlineData(ActivationScheme.PerTokenDynamic)]
    [InlineData(ActivationScheme.PerTensorStatic)]
    public void Error_MatchesFloat64Reference(ActivationScheme scheme)
    {
        const int n = 48, channels = 16;
        var x = FakeQuantTests.Random(n * channels, 10, outlierScale: 20, outlierEvery: 37);
        var wa = FakeQuantTests.Random(channels * 12, 11); // [in, out]
        var wb = FakeQuantTests.Random(10 * channels, 12); // [out, in]
        var wbInOut = new float[channels * 10];
        for (int o = 0; o < 10; o++) for (int j = 0; j < channels; j++) wbInOut[j * 10 + o] = wb[o * channels + j];
        var result = SmoothAlphaSearch.Search(new CapturedActivation("x", channels, x),
            [Linear("a", wa, channels, 12, WeightLayout.InOut), Linear("b", wb, 10, channels, WeightLayout.OutIn)],
            new SmoothAlphaSearchOptions { Scheme = scheme });
        Assert.Equal(21, result.Errors.Count);
        Assert.Equal(n, result.Tokens);
        Assert.Equal([12, 10], result.OutputChannels);
        var weights = new[] { Matrix(wa, channels, 12), Matrix(wbInOut, channels, 10) };
        foreach (var e in result.Errors)
        {
            double expected = ReferenceError(Matrix(x, n, channels), weights, e.Alpha, scheme);
            // fp32 vs fp64: the products and an occasional rounding at a midpoint; 1% of an error that is itself ~1e-4.
            Assert.True(Math.Abs(e.Error - expected) <= 0.01 * expected, $"alpha {e.Alpha}: {e.Error} vs reference {expected}");
        }
        Assert.Equal(result.Errors.Min(e => e.Error), result.Error);
    }

    [Theory]
    [InlineData(ActivationScheme.PerTokenDynamic)]
    [InlineData(ActivationScheme.PerTensorStatic)]
    public void OutlierChannel_ChoosesAPositiveAlphaThatBeatsAlphaZero(ActivationScheme scheme)
    {
        const int n = 256, channels = 64, outputs = 48;
        var x = FakeQuantTests.Random(n * channels, 20);
        for (int i = 0; i < n; i++) x[i * channels + 5] *= 100;
        var w = FakeQuantTests.Random(channels * outputs, 21);
        var result = SmoothAlphaSearch.Search(new CapturedActivation("x", channels, x), [Linear("w", w, channels, outputs, WeightLayout.InOut)],
            new SmoothAlphaSearchOptions { Scheme = scheme });
        Assert.True(result.Alpha > 0, $"alpha {result.Alpha}");
        Assert.True(result.Error < result.Errors[0].Error, $"{result.Error} at {result.Alpha} vs {result.Errors[0].Error} at 0");
        Assert.True(result.Error < result.UnsmoothedError, $"{result.Error} vs unsmoothed {result.UnsmoothedError}");
        Assert.True(result.Elapsed > TimeSpan.Zero);
        // The scale is the formula at the chosen alpha.
        Assert.Equal(SmoothQuantScale.Compute(result.Scales.Select((_, j) => (double)Enumerable.Range(0, n).Max(i => Math.Abs(x[i * channels + j]))).ToArray(),
            SmoothQuantScale.InputChannelAbsMax(ArrayTensor.Create(w, channels, outputs), WeightLayout.InOut), result.Alpha), result.Scales);
    }

    [Fact]
    public void Ties_GiveEveryMemberOfAGroupOneScale()
    {
        const int heads = 4, kvHeads = 2, headSize = 3, channels = heads * headSize, n = 32;
        var x = FakeQuantTests.Random(n * channels, 30, outlierScale: 40, outlierEvery: 7);
        var w = FakeQuantTests.Random(channels * 8, 31);
        var ties = ChannelTies.GroupedHeads(heads, kvHeads, headSize);
        var result = SmoothAlphaSearch.Search(new CapturedActivation("attn", channels, x), [Linear("o", w, channels, 8, WeightLayout.InOut)],
            new SmoothAlphaSearchOptions { Ties = ties, Alphas = [0.5] });
        Assert.Equal(kvHeads * headSize, ties.Groups.Count);
        foreach (var group in ties.Groups) Assert.Single(group.Select(c => result.Scales[c]).Distinct());
        // heads 0, 1 read KV head 0: channel (0, d) and (1, d) are tied, (2, d) is not.
        Assert.Equal(result.Scales[0], result.Scales[headSize]);
        Assert.Contains(ties.Groups, g => g.SequenceEqual([2 * headSize + 1, 3 * headSize + 1]));
    }

    [Fact]
    public void EqualErrors_GoToTheSmallerAlpha_AndTheGridIsSorted()
    {
        // Zero activations: every alpha has error 0.
        var result = SmoothAlphaSearch.Search(new CapturedActivation("x", 4, new float[40]), [Linear("w", FakeQuantTests.Random(16, 1), 4, 4, WeightLayout.OutIn)],
            new SmoothAlphaSearchOptions { Alphas = [0.9, 0.2, 0.5] });
        Assert.Equal([0.2, 0.5, 0.9], result.Errors.Select(e => e.Alpha));
        Assert.Equal(0.2, result.Alpha);
    }

    [Fact]
    public void Subsampling_BoundsTokensAndOutputChannels()
    {
        const int n = 300, channels = 32, outputs = 200;
        var x = FakeQuantTests.Random(n * channels, 40);
        var w = FakeQuantTests.Random(outputs * channels, 41);
        var options = new SmoothAlphaSearchOptions { MaxTokens = 64, MaxOutputChannels = 50, Alphas = [0, 0.5, 1] };
        var result = SmoothAlphaSearch.Search(new CapturedActivation("x", channels, x), [Linear("w", w, outputs, channels, WeightLayout.OutIn)], options);
        Assert.Equal(64, result.Tokens);
        Assert.Equal(n, result.TokensCaptured);
        Assert.Equal([50], result.OutputChannels);
        Assert.Equal(64L * channels * 50 * 4, result.MultiplyAdds);
        // Seeded: the same options measure the same errors.
        var again = SmoothAlphaSearch.Search(new CapturedActivation("x", channels, x), [Linear("w", w, outputs, channels, WeightLayout.OutIn)], options);
        Assert.Equal(result.Errors.Select(e => e.Error), again.Errors.Select(e => e.Error));
    }

    [Fact]
    public void HalfAndBFloat16Weights_MeasureWhatTheirFloatValuesDo()
    {
        const int n = 64, channels = 24, outputs = 20;
        var x = FakeQuantTests.Random(n * channels, 50, outlierScale: 30, outlierEvery: 11);
        var half = FakeQuantTests.Random(outputs * channels, 51).Select(v => (Half)v).ToArray();
        var bf = half.Select(h => (BFloat16)(float)h).ToArray();
        var activation = new CapturedActivation("x", channels, x);
        var asFloat = SmoothAlphaSearch.Search(activation, [Linear("w", half.Select(h => (float)h).ToArray(), outputs, channels, WeightLayout.OutIn)]);
        var asHalf = SmoothAlphaSearch.Search(activation, [new SiteLinear("w", ArrayTensor.Create<Half>(half, outputs, channels), WeightLayout.OutIn)]);
        Assert.Equal(asFloat.Errors.Select(e => e.Error), asHalf.Errors.Select(e => e.Error));
        var bfAsFloat = SmoothAlphaSearch.Search(activation, [Linear("w", bf.Select(b => (float)b).ToArray(), outputs, channels, WeightLayout.OutIn)]);
        var asBf = SmoothAlphaSearch.Search(activation, [new SiteLinear("w", ArrayTensor.Create<BFloat16>(bf, outputs, channels), WeightLayout.OutIn)]);
        Assert.Equal(bfAsFloat.Errors.Select(e => e.Error), asBf.Errors.Select(e => e.Error));
    }

    [Theory]
    [InlineData(WeightLayout.InOut)]
    [InlineData(WeightLayout.OutIn)]
    public void WeightSample_ReadsTheSampledChannelsAndTheInputMaxima_AcrossChunks(WeightLayout layout)
    {
        const int rows = 1100, columns = 1000; // 1.1M elements: more than one chunk
        var values = FakeQuantTests.Random(rows * columns, 60).Select(v => (Half)v).ToArray();
        values[5 * columns + 7] = Half.NaN;
        var weight = ArrayTensor.Create<Half>(values, rows, columns);
        var sample = WeightSample.Read(new SiteLinear("w", weight, layout), 37, 3);
        Assert.Equal(SmoothQuantScale.InputChannelAbsMax(weight, layout), sample.InputAbsMax);
        Assert.Equal(37, sample.Count);
        int inFeatures = layout == WeightLayout.InOut ? rows : columns;
        for (int c = 0; c < sample.Count; c++)
            for (int j = 0; j < inFeatures; j += 97)
            {
                var stored = layout == WeightLayout.InOut ? values[j * columns + sample.Columns[c]] : values[sample.Columns[c] * columns + j];
                Assert.Equal((float)stored, sample.Values[c * inFeatures + j]);
            }
    }

    [Fact]
    public void BadInput_NamesTheSiteAndTheLinear()
    {
        var x = new CapturedActivation("site.x", 4, FakeQuantTests.Random(8, 1));
        var quantized = new SiteLinear("q_proj", ArrayTensor.Create(new byte[16], 4, 4), WeightLayout.OutIn);
        Assert.Contains("q_proj", Assert.Throws<NotSupportedException>(() => SmoothAlphaSearch.Search(x, [quantized])).Message);
        var wrong = Linear("k_proj", FakeQuantTests.Random(15, 1), 5, 3, WeightLayout.InOut);
        var error = Assert.Throws<ArgumentException>(() => SmoothAlphaSearch.Search(x, [wrong]));
        Assert.Contains("site.x", error.Message);
        Assert.Contains("k_proj", error.Message);
        var nonFinite = new CapturedActivation("nan", 2, [1, float.NaN]);
        Assert.Throws<ArgumentException>(() => SmoothAlphaSearch.Search(nonFinite, [Linear("w", [1, 2, 3, 4], 2, 2, WeightLayout.InOut)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => SmoothAlphaSearch.Search(x, [Linear("w", FakeQuantTests.Random(16, 1), 4, 4, WeightLayout.InOut)],
            new SmoothAlphaSearchOptions { Alphas = [1.5] }));
    }
}

using OnnxOutlierTools.Mitigation.Smoothing;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Tests.Mitigation.Smoothing;

/// <summary>FakeQuant against a float64 reference (round half to even, clamp to [-127, 127], dequantize). Elements whose
/// x / scale lies within 1e-4 of a rounding midpoint may round either way in fp32 vs fp64; there one quantum of difference
/// is allowed, elsewhere the results agree to fp32 precision.</summary>
public sealed class FakeQuantTests
{
    internal static float[] Random(int count, int seed, double outlierScale = 1, int outlierEvery = 0)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            double u1 = 1 - random.NextDouble(), u2 = random.NextDouble();
            double v = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            values[i] = (float)(outlierEvery > 0 && i % outlierEvery == 0 ? v * outlierScale : v);
        }
        return values;
    }

    internal static double ReferenceQuantize(double x, double scale)
    {
        if (scale == 0) return 0;
        return Math.Clamp(Math.Round(x / scale, MidpointRounding.ToEven), -127, 127) * scale;
    }

    private static void AssertMatches(ReadOnlySpan<float> source, ReadOnlySpan<float> actual, Func<int, double> scaleOf)
    {
        for (int i = 0; i < source.Length; i++)
        {
            double scale = scaleOf(i), expected = ReferenceQuantize(source[i], scale);
            double ratio = source[i] / scale, distanceToMidpoint = Math.Abs(ratio - Math.Floor(ratio) - 0.5);
            double tolerance = distanceToMidpoint < 1e-4 ? scale * 1.0001 : 1e-5 * Math.Max(1, Math.Abs(expected));
            Assert.True(Math.Abs(actual[i] - expected) <= tolerance, $"element {i}: {actual[i]} vs reference {expected} (x {source[i]}, scale {scale})");
        }
    }

    [Fact]
    public void PerTensor_MatchesFloat64Reference()
    {
        var x = Random(4096, 1, outlierScale: 50, outlierEvery: 97);
        var q = new float[x.Length];
        float scale = FakeQuant.PerTensor(x, q);
        double expectedScale = x.Max(v => Math.Abs((double)v)) / 127;
        Assert.Equal(expectedScale, scale, expectedScale * 1e-6);
        AssertMatches(x, q, _ => expectedScale);
        // At most 255 distinct levels, the max itself exactly representable.
        Assert.True(q.Distinct().Count() <= 255);
        int argmax = Array.IndexOf(x, x.MaxBy(Math.Abs));
        Assert.Equal(x[argmax], q[argmax], Math.Abs(x[argmax]) * 1e-6);
    }

    [Fact]
    public void GivenScale_ClampsRoundsHalfToEvenAndKeepsZeros()
    {
        float[] x = [0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 1000, -1000, 0];
        var q = new float[x.Length];
        FakeQuant.Apply(x, 1, q);
        Assert.Equal([0f, 2, 2, 0, -2, 127, -127, 0], q);
        FakeQuant.Apply(new float[3], 0, q.AsSpan(0, 3));
        Assert.Equal([0f, 0, 0], q[..3]);
        Assert.Equal(0f, FakeQuant.Scale(new float[5]));
    }

    [Fact]
    public void NonFiniteInput_IsNeverHidden()
    {
        float[] x = [1, float.NaN, 3];
        var q = new float[3];
        FakeQuant.PerTensor(x, q);
        Assert.All(q, v => Assert.True(float.IsNaN(v)));
        q = new float[4];
        FakeQuant.PerOutputChannel([1, float.NaN, 2, 3], 2, 2, WeightLayout.InOut, q);
        Assert.True(float.IsNaN(q[1]) && float.IsNaN(q[3]));
        Assert.Equal(1f, q[0], 1e-2f);
    }

    [Fact]
    public void PerRow_QuantizesEachTokenByItsOwnMax()
    {
        const int columns = 96;
        var x = Random(columns * 33, 2, outlierScale: 80, outlierEvery: 61);
        var q = new float[x.Length];
        var scales = new float[33];
        FakeQuant.PerRow(x, columns, q, scales);
        var rowScale = Enumerable.Range(0, 33).Select(r => x.Skip(r * columns).Take(columns).Max(v => Math.Abs((double)v)) / 127).ToArray();
        for (int r = 0; r < 33; r++) Assert.Equal(rowScale[r], scales[r], rowScale[r] * 1e-6);
        AssertMatches(x, q, i => rowScale[i / columns]);
    }

    [Theory]
    [InlineData(WeightLayout.InOut)]
    [InlineData(WeightLayout.OutIn)]
    public void PerOutputChannel_MatchesFloat64Reference(WeightLayout layout)
    {
        const int rows = 40, columns = 24;
        var w = Random(rows * columns, 3, outlierScale: 30, outlierEvery: 53);
        var q = new float[w.Length];
        int outputs = layout == WeightLayout.InOut ? columns : rows;
        var scales = new float[outputs];
        FakeQuant.PerOutputChannel(w, rows, columns, layout, q, scales);
        int OutputOf(int i) => layout == WeightLayout.InOut ? i % columns : i / columns;
        var expected = new double[outputs];
        for (int i = 0; i < w.Length; i++) expected[OutputOf(i)] = Math.Max(expected[OutputOf(i)], Math.Abs((double)w[i]) / 127);
        for (int o = 0; o < outputs; o++) Assert.Equal(expected[o], scales[o], expected[o] * 1e-6);
        AssertMatches(w, q, i => expected[OutputOf(i)]);
    }

    [Fact]
    public void PerOutputChannel_LayoutsAgreeOnTheTransposedWeight()
    {
        const int inFeatures = 17, outFeatures = 9;
        var inOut = Random(inFeatures * outFeatures, 4);
        var outIn = new float[inOut.Length];
        for (int i = 0; i < inFeatures; i++)
            for (int o = 0; o < outFeatures; o++) outIn[o * inFeatures + i] = inOut[i * outFeatures + o];
        var qa = new float[inOut.Length];
        var qb = new float[inOut.Length];
        FakeQuant.PerOutputChannel(inOut, inFeatures, outFeatures, WeightLayout.InOut, qa);
        FakeQuant.PerOutputChannel(outIn, outFeatures, inFeatures, WeightLayout.OutIn, qb);
        for (int i = 0; i < inFeatures; i++)
            for (int o = 0; o < outFeatures; o++) Assert.Equal(qa[i * outFeatures + o], qb[o * inFeatures + i]);
    }
}

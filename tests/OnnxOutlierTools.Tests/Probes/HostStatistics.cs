using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>The probe statistics computed on the host in float64 from a full dump of the tensor (the independent
/// reference for the in-graph reductions), and the comparison.
/// <para>Tolerances: max, min, |x| per token, the median, the counts above the threshold, arg-max and the top-k values
/// are exact (they select an element; a float16 tensor is cast to float32 exactly); sums are float32 reductions in
/// ORT, so a sum of x may differ from the float64 sum by 2e-5 of the sum of |x| over the same tokens, and sums of x^2
/// and x^4 (positive terms) by 2e-5 relative. Attention mass: 1e-5 absolute per query summed (probabilities &lt;= 1);
/// a side subgraph recomputed against a float64 attention: 1e-4 absolute. FLOAT16 tensors: ORT's CPU runs fp16 ops in
/// fp32 and drops a fp32 -> fp16 -> fp32 Cast pair, so the probe may see the unrounded value: element statistics then
/// agree to fp16 rounding (2^-10 relative, 2^-24 absolute for subnormals), and the arg-max to a channel of that magnitude.</para></summary>
public static class HostStatistics
{
    public const double SumTolerance = 2e-5;

    public static void AssertActivation(ProbedRun run, ProbePoint point, ProbeSettings settings)
    {
        var tensor = run[point.Tensor];
        double[] x = tensor.ToDoubleArray();
        int c = (int)tensor.Dims[^1];
        int rows = x.Length / c;
        string at = point.Id;
        if (point.Channels is long declared) Assert.Equal(declared, c);
        double rel = tensor.ElementType == OnnxOutlierTools.Tensors.TensorDataType.Float16 ? 1.0 / 1024 : 0;
        // fp16 subnormals (below 2^-14) are spaced 2^-24 apart.
        double ulpFloor = rel > 0 ? Math.Pow(2, -24) : 0;
        bool Same(double a, double b) => Math.Abs(a - b) <= rel * Math.Max(Math.Abs(a), Math.Abs(b)) + ulpFloor;

        var max = Floats(run, point, ProbeStatistic.ChannelMax);
        var min = Floats(run, point, ProbeStatistic.ChannelMin);
        var sum = Floats(run, point, ProbeStatistic.ChannelSum);
        var sum2 = Floats(run, point, ProbeStatistic.ChannelSumSquares);
        var sum4 = Floats(run, point, ProbeStatistic.ChannelSumFourth);
        var above = Floats(run, point, ProbeStatistic.ChannelAboveCount);
        Assert.Equal(c, max.Length);
        for (int j = 0; j < c; j++)
        {
            double mx = double.NegativeInfinity, mn = double.PositiveInfinity, s = 0, sa = 0, s2 = 0, s4 = 0;
            long count = 0;
            for (int r = 0; r < rows; r++)
            {
                double v = x[r * c + j];
                mx = Math.Max(mx, v); mn = Math.Min(mn, v);
                s += v; sa += Math.Abs(v); s2 += v * v; s4 += v * v * v * v;
                if (Math.Abs(v) > settings.AboveThreshold) count++;
            }
            Assert.True(Same(mx, max[j]), $"{at} channel {j}: max {max[j]} in graph, {mx} on the host");
            Assert.True(Same(mn, min[j]), $"{at} channel {j}: min {min[j]} in graph, {mn} on the host");
            Assert.True(Math.Abs(sum[j] - s) <= (SumTolerance + rel) * sa + 1e-30, $"{at} channel {j}: sum {sum[j]} in graph, {s} on the host (sum |x| {sa})");
            Assert.True(Math.Abs(sum2[j] - s2) <= (SumTolerance + 2 * rel) * s2 + 1e-30, $"{at} channel {j}: sum x^2 {sum2[j]} in graph, {s2} on the host");
            Assert.True(Math.Abs(sum4[j] - s4) <= (SumTolerance + 4 * rel) * s4 + 1e-30, $"{at} channel {j}: sum x^4 {sum4[j]} in graph, {s4} on the host");
            Assert.True(count == above[j], $"{at} channel {j}: {above[j]} above {settings.AboveThreshold} in graph, {count} on the host");
        }

        var tokenMax = Floats(run, point, ProbeStatistic.TokenMaxAbs);
        var tokenMedian = Floats(run, point, ProbeStatistic.TokenMedianAbs);
        var argMax = run[point.Outputs[ProbeStatistic.TokenArgMaxChannel]].ToInt64Array();
        Assert.Equal(rows, tokenMax.Length);
        Assert.Equal(rows, argMax.Length);
        Assert.Equal([(long)rows], run[point.Outputs[ProbeStatistic.TokenMaxAbs]].Dims);
        for (int r = 0; r < rows; r++)
        {
            var magnitudes = Enumerable.Range(0, c).Select(j => Math.Abs(x[r * c + j])).ToArray();
            double largest = magnitudes.Max();
            int first = Array.IndexOf(magnitudes, largest);
            // The median is over every channel, or over channels 0, s, 2s, ... (s = floor(C / M)) when C > M = MedianChannels.
            int step = settings.MedianChannels > 0 && c > settings.MedianChannels ? c / settings.MedianChannels : 1;
            var sorted = magnitudes.Where((_, j) => j % step == 0).Order().ToArray();
            Assert.True(Same(largest, tokenMax[r]), $"{at} token {r}: max |x| {tokenMax[r]} in graph, {largest} on the host");
            Assert.True(Same(sorted[sorted.Length / 2], tokenMedian[r]),
                $"{at} token {r}: median |x| {tokenMedian[r]} in graph, {sorted[sorted.Length / 2]} (element {sorted.Length / 2} of {sorted.Length} ascending, stride {step}) on the host");
            Assert.True(rel == 0 ? first == argMax[r] : Same(magnitudes[argMax[r]], largest), $"{at} token {r}: arg max {argMax[r]} in graph, {first} on the host");
        }

        var topAbs = Floats(run, point, ProbeStatistic.TopKAbs);
        var topIndex = run[point.Outputs[ProbeStatistic.TopKIndex]].ToInt64Array();
        var topValue = Floats(run, point, ProbeStatistic.TopKValue);
        int k = Math.Min(settings.TopK, x.Length);
        Assert.Equal(k, topAbs.Length);
        var expected = x.Select(Math.Abs).OrderDescending().Take(k).ToArray();
        for (int i = 0; i < k; i++) Assert.True(Same(expected[i], topAbs[i]), $"{at} top {i}: {topAbs[i]} in graph, {expected[i]} on the host");
        Assert.Equal(k, topIndex.Distinct().Count());
        for (int i = 0; i < k; i++)
        {
            Assert.True(Same(Math.Abs(x[topIndex[i]]), topAbs[i]), $"{at} top {i}: index {topIndex[i]} holds {x[topIndex[i]]}, not +-{topAbs[i]}");
            Assert.True(Same(x[topIndex[i]], topValue[i]), $"{at} top {i}: signed value {topValue[i]} in graph, {x[topIndex[i]]} at its index");
        }
    }

    /// <summary>[B, H, P] mass of the first P keys summed over queries, from probabilities [B, H, S, T].</summary>
    public static double[] MassFromProbabilities(double[] p, int b, int h, int s, int t, int positions)
    {
        int pp = Math.Min(positions, t);
        var mass = new double[b * h * pp];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < h; j++)
                for (int q = 0; q < s; q++)
                    for (int key = 0; key < pp; key++)
                        mass[(i * h + j) * pp + key] += p[((i * h + j) * s + q) * t + key];
        return mass;
    }

    public static void AssertClose(double[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tolerance, $"{what}: max |diff| {worst:E3} > {tolerance:E1}");
    }

    public static float[] Floats(ProbedRun run, ProbePoint point, ProbeStatistic statistic)
    {
        var t = run[point.Outputs[statistic]];
        Assert.Equal(OnnxOutlierTools.Tensors.TensorDataType.Float, t.ElementType);
        return t.ToSingleArray();
    }
}

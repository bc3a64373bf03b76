namespace OnnxOutlierTools.Tests.Import;

/// <summary>Differences between decoder outputs, for the import tests.</summary>
internal static class Diff
{
    public static double MaxAbs(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        return max;
    }

    public static double MaxAbs(float[][] a, float[][] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++) max = Math.Max(max, MaxAbs(a[i], b[i]));
        return max;
    }

    public static double MaxAbs(double[][] reference, float[][] b)
    {
        Assert.Equal(reference.Length, b.Length);
        double max = 0;
        for (int i = 0; i < b.Length; i++)
        {
            Assert.Equal(reference[i].Length, b[i].Length);
            for (int j = 0; j < b[i].Length; j++) max = Math.Max(max, Math.Abs(reference[i][j] - b[i][j]));
        }
        return max;
    }

    public static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}

namespace OnnxOutlierTools.Import;

/// <summary>Rotary position embedding helpers: the angle tables and the per-head row permutation
/// between the two coordinate orders (see <see cref="RopeLayout"/>).</summary>
public static class Rope
{
    /// <summary>Frequency j (0 &lt;= j &lt; head_size/2) of a head: theta^(-2j / head_size).</summary>
    public static double Frequency(DecoderConfig c, int j) => Math.Pow(c.RopeTheta, -2.0 * j / c.HeadSize);

    /// <summary>cos and sin of pos * freq_j as [positions, head_size/2] row-major float32 tables (computed in
    /// float64, rounded once): the layout of llama2.c's freq_cis tables and of onnxruntime's cos_cache/sin_cache.</summary>
    public static (float[] Cos, float[] Sin) Tables(DecoderConfig c, int positions)
    {
        int half = c.HeadSize / 2;
        var cos = new float[(long)positions * half];
        var sin = new float[cos.Length];
        for (int p = 0; p < positions; p++)
            for (int j = 0; j < half; j++)
            {
                double angle = p * Frequency(c, j);
                cos[(long)p * half + j] = (float)Math.Cos(angle);
                sin[(long)p * half + j] = (float)Math.Sin(angle);
            }
        return (cos, sin);
    }

    /// <summary>The rotate-half form: [positions, head_size] with each half-table repeated twice
    /// (Hugging Face's cos_cached / sin_cached).</summary>
    public static (float[] Cos, float[] Sin) RotateHalfTables(DecoderConfig c, int positions)
    {
        var (cos, sin) = Tables(c, positions);
        int half = c.HeadSize / 2, hs = c.HeadSize;
        var cos2 = new float[(long)positions * hs];
        var sin2 = new float[cos2.Length];
        for (int p = 0; p < positions; p++)
            for (int j = 0; j < half; j++)
            {
                cos2[(long)p * hs + j] = cos2[(long)p * hs + j + half] = cos[(long)p * half + j];
                sin2[(long)p * hs + j] = sin2[(long)p * hs + j + half] = sin[(long)p * half + j];
            }
        return (cos2, sin2);
    }

    /// <summary>
    /// Reorders the output rows of a [heads*head_size, in] projection (row-major) from interleaved pairs to
    /// rotate-half order, per head: new row j = old row 2j and new row j + head_size/2 = old row 2j+1
    /// (the permutation of HF's convert_llama_weights_to_hf). The dot products q.k within a head are
    /// unchanged, so attention is unchanged.
    /// </summary>
    public static float[] InterleavedToRotateHalf(ReadOnlySpan<float> rows, int heads, int headSize, int inFeatures) =>
        PermuteRows(rows, heads, headSize, inFeatures, toRotateHalf: true);

    /// <summary>The inverse of <see cref="InterleavedToRotateHalf"/>.</summary>
    public static float[] RotateHalfToInterleaved(ReadOnlySpan<float> rows, int heads, int headSize, int inFeatures) =>
        PermuteRows(rows, heads, headSize, inFeatures, toRotateHalf: false);

    /// <summary>Rotate-half row j of a head is interleaved row 2j (first half) or 2(j - half) + 1 (second half);
    /// the permutation moves rows one way or the other.</summary>
    private static float[] PermuteRows(ReadOnlySpan<float> rows, int heads, int headSize, int inFeatures, bool toRotateHalf)
    {
        if (rows.Length != (long)heads * headSize * inFeatures)
            throw new ArgumentException($"expected {heads}*{headSize}*{inFeatures} values, got {rows.Length}", nameof(rows));
        var result = new float[rows.Length];
        int half = headSize / 2;
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < headSize; j++)
            {
                int interleaved = j < half ? 2 * j : 2 * (j - half) + 1;
                int from = toRotateHalf ? interleaved : j, to = toRotateHalf ? j : interleaved;
                rows.Slice((h * headSize + from) * inFeatures, inFeatures).CopyTo(result.AsSpan((h * headSize + to) * inFeatures, inFeatures));
            }
        return result;
    }
}

namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// Widens a decoder without changing what it computes: the residual stream gets extra channels that no
/// original weight reads or writes, every head gets extra (zero) dimensions, and the FFN extra (zero)
/// neurons. The pieces that would otherwise change the function are compensated exactly:
/// <list type="bullet">
/// <item>RMSNorm divides by the root mean square over all channels: every gain is scaled by sqrt(oldDim / newDim)
/// and the epsilon by oldDim / newDim, which makes gain' * x / sqrt(sum x^2 / newDim + eps') equal
/// gain * x / sqrt(sum x^2 / oldDim + eps) for any x whose new channels are zero.</item>
/// <item>Attention scores are scaled by 1 / sqrt(head size): the query rows are multiplied by
/// sqrt(newHeadSize / oldHeadSize).</item>
/// <item>RoPE frequency j is theta^(-2j / head size): theta becomes theta^(newHeadSize / oldHeadSize), so the
/// original pairs keep their frequencies and the new pairs (zero in the original weights) get lower ones.</item>
/// </list>
/// Channel j of the original stream stays channel j, head dimension d of head h becomes row h * newHeadSize + d,
/// FFN neuron i stays neuron i. The classifier becomes a separate matrix (a copy of the embedding when it was shared),
/// so planted embedding channels do not turn into logits.
/// </summary>
public static class ResidualWidening
{
    public static DecoderWeights Widen(DecoderWeights original, int newHeadSize, int extraHidden)
    {
        ArgumentNullException.ThrowIfNull(original);
        var c = original.Config;
        if (newHeadSize < c.HeadSize || newHeadSize % 2 != 0) throw new ArgumentException($"new head size {newHeadSize} must be even and >= {c.HeadSize}", nameof(newHeadSize));
        if (extraHidden < 0) throw new ArgumentOutOfRangeException(nameof(extraHidden));
        if (c.RopeLayout != RopeLayout.InterleavedPairs) throw new ArgumentException("widening expects llama2.c's interleaved-pair RoPE layout", nameof(original));
        int d0 = c.Dim, d = c.Heads * newHeadSize, h0 = c.HiddenDim, h = h0 + extraHidden;
        var config = new DecoderConfig(d, h, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.MaxSeqLen,
            normEps: (float)(c.NormEps * (double)d0 / d),
            ropeTheta: Math.Pow(c.RopeTheta, (double)newHeadSize / c.HeadSize),
            ropeLayout: c.RopeLayout, sharedClassifier: false);
        double gainScale = Math.Sqrt((double)d0 / d), queryScale = Math.Sqrt((double)newHeadSize / c.HeadSize);

        var layers = new LayerWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            var w = original.Layers[l];
            layers[l] = new LayerWeights(
                Gain(w.AttentionNorm, d, gainScale),
                HeadRows(w.Wq, c.Heads, c.HeadSize, newHeadSize, d0, d, queryScale),
                HeadRows(w.Wk, c.KvHeads, c.HeadSize, newHeadSize, d0, d, 1),
                HeadRows(w.Wv, c.KvHeads, c.HeadSize, newHeadSize, d0, d, 1),
                HeadColumns(w.Wo, c.Heads, c.HeadSize, newHeadSize, d0, d),
                Gain(w.FfnNorm, d, gainScale),
                Pad(w.W1, h0, d0, h, d),
                Pad(w.W2, d0, h0, d, h),
                Pad(w.W3, h0, d0, h, d));
        }
        var embedding = Pad(original.TokenEmbedding, c.VocabSize, d0, c.VocabSize, d);
        var classifier = Pad(original.Classifier, c.VocabSize, d0, c.VocabSize, d);
        return new DecoderWeights(config, embedding, layers, Gain(original.FinalNorm, d, gainScale), classifier);
    }

    private static float[] Gain(float[] gain, int newDim, double scale)
    {
        var result = new float[newDim];
        for (int i = 0; i < gain.Length; i++) result[i] = (float)(gain[i] * scale);
        return result;
    }

    // [rows, cols] row-major into the top-left corner of [newRows, newCols].
    internal static float[] Pad(float[] m, int rows, int cols, int newRows, int newCols)
    {
        var result = new float[(long)newRows * newCols];
        for (int r = 0; r < rows; r++) Array.Copy(m, (long)r * cols, result, (long)r * newCols, cols);
        return result;
    }

    // [heads*hs, in] -> [heads*hs', in']: row h*hs+d moves to h*hs'+d.
    private static float[] HeadRows(float[] m, int heads, int hs, int newHs, int inDim, int newIn, double scale)
    {
        var result = new float[(long)heads * newHs * newIn];
        for (int head = 0; head < heads; head++)
            for (int i = 0; i < hs; i++)
                for (int j = 0; j < inDim; j++)
                    result[(long)(head * newHs + i) * newIn + j] = (float)(m[(long)(head * hs + i) * inDim + j] * scale);
        return result;
    }

    // [out, heads*hs] -> [out', heads*hs']: column h*hs+d moves to h*hs'+d.
    private static float[] HeadColumns(float[] m, int heads, int hs, int newHs, int outDim, int newOut)
    {
        int inDim = heads * hs, newIn = heads * newHs;
        var result = new float[(long)newOut * newIn];
        for (int o = 0; o < outDim; o++)
            for (int head = 0; head < heads; head++)
                for (int i = 0; i < hs; i++)
                    result[(long)o * newIn + head * newHs + i] = m[(long)o * inDim + head * hs + i];
        return result;
    }
}

namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// Widens a decoder without changing what it computes: extra attention heads (and KV heads) of the same head
/// size widen the residual stream to heads * head size; the new channels, heads and FFN neurons are zero in
/// every original weight (nothing reads or writes them). Only RMSNorm would notice, because it divides by the
/// root mean square over all channels: every gain is scaled by sqrt(oldDim / newDim) and the epsilon by
/// oldDim / newDim, which makes gain' * x / sqrt(sum x^2 / newDim + eps') equal gain * x / sqrt(sum x^2 / oldDim + eps)
/// for any x whose new channels are zero. Head size, RoPE and the attention scale are unchanged. Original
/// channel j stays channel j, head h stays head h (with KV head h / queries-per-KV-head, as before), neuron i stays
/// neuron i. The classifier becomes a separate matrix (a copy of the embedding when it was shared), so planted
/// embedding channels do not turn into logits.
/// </summary>
public static class ResidualWidening
{
    public static DecoderWeights Widen(DecoderWeights original, int newHeads, int newKvHeads, int extraHidden)
    {
        ArgumentNullException.ThrowIfNull(original);
        var c = original.Config;
        if (newHeads < c.Heads || newKvHeads < c.KvHeads) throw new ArgumentException($"widening needs at least {c.Heads} heads and {c.KvHeads} KV heads");
        if (newHeads % newKvHeads != 0 || newHeads / newKvHeads != c.QueriesPerKvHead)
            throw new ArgumentException($"{newHeads} heads over {newKvHeads} KV heads would regroup the original heads ({c.QueriesPerKvHead} queries per KV head)");
        if (extraHidden < 0) throw new ArgumentOutOfRangeException(nameof(extraHidden));
        int d0 = c.Dim, d = newHeads * c.HeadSize, h0 = c.HiddenDim, h = h0 + extraHidden, kv0 = c.KvDim, kv = newKvHeads * c.HeadSize;
        var config = new DecoderConfig(d, h, c.Layers, newHeads, newKvHeads, c.VocabSize, c.MaxSeqLen,
            normEps: (float)(c.NormEps * (double)d0 / d), ropeTheta: c.RopeTheta, ropeLayout: c.RopeLayout, sharedClassifier: false);
        double gainScale = Math.Sqrt((double)d0 / d);

        var layers = new LayerWeights[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            var w = original.Layers[l];
            layers[l] = new LayerWeights(
                Gain(w.AttentionNorm, d, gainScale),
                Pad(w.Wq, d0, d0, d, d),
                Pad(w.Wk, kv0, d0, kv, d),
                Pad(w.Wv, kv0, d0, kv, d),
                Pad(w.Wo, d0, d0, d, d),
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

    // [rows, cols] row-major into the top-left corner of [newRows, newCols] (head-major rows keep their heads).
    private static float[] Pad(float[] m, int rows, int cols, int newRows, int newCols)
    {
        var result = new float[(long)newRows * newCols];
        for (int r = 0; r < rows; r++) Array.Copy(m, (long)r * cols, result, (long)r * newCols, cols);
        return result;
    }
}

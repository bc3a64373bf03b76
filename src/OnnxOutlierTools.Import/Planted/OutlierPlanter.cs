namespace OnnxOutlierTools.Import.Planted;

/// <summary>
/// Plants the three outlier kinds of <see cref="PlantedOutlierPlan"/> into a trained decoder (stories260K) by
/// editing weights only, keeping it the same language model:
/// <list type="number">
/// <item>The stream is widened (<see cref="ResidualWidening"/>, exact). The embedding writes a constant in
/// the bias channel for every token and a flag in the flag channel for BOS only.</item>
/// <item>Massive activations: two new FFN neurons of the massive block read only the flag channel, so they
/// are exactly zero on every token but BOS, where y6 = SiLU(gate) * up is large; their down-projection
/// columns write it into two new residual channels (one super weight each), which the residual stream
/// carries to the last block (nothing writes those channels again).</item>
/// <item>Channel-wise outliers: the gain block's FFN-norm gain is multiplied at two channels and the
/// gate/up weights of those input channels divided by the same factor (function unchanged).</item>
/// <item>Attention sink: a new head whose query reads the bias channel and whose key is large on BOS only, so
/// every query puts most of its mass on position 0; its value on BOS is zero (compensation), on other tokens a
/// multiple of an original KV head's, so it is harmless while it sinks and harmful without the sink.</item>
/// <item>BOS compensation: BOS at position 0 sees only itself, so its hidden state is input-independent. The
/// flag and, from the massive block on, the massive activations change BOS's RMSNorm denominators (its
/// other channels shrink, as in real models); the keys, values, gate/up pre-activations of BOS and its
/// logits are restored to the original model's values by one weight column per linear that reads the
/// flag channel (before the massive activation exists) or the first massive channel (after). Those
/// channels are exactly zero on every other token, so no other token is affected. From the massive block on
/// that compensation (and the sink key) rides on the massive activation: remove it and the sink head spreads its
/// attention over every token (the ablation in the ground truth).</item>
/// </list>
/// </summary>
public sealed class OutlierPlanter
{
    private readonly DecoderWeights _original;
    private readonly PlantedOutlierPlan _plan;

    public OutlierPlanter(DecoderWeights original, PlantedOutlierPlan plan)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(plan);
        _original = original;
        _plan = plan;
        Validate();
    }

    /// <summary>The token whose embedding carries the flag (llama2.c BOS).</summary>
    public const int BosToken = Llama2cTokenizer.Bos;

    /// <summary>Index of the first planted FFN neuron (the original hidden size).</summary>
    public int FirstPlantedNeuron => _original.Config.HiddenDim;

    public DecoderWeights Plant()
    {
        var p = _plan;
        var w = ResidualWidening.Widen(_original, p.Heads, p.KvHeads, p.MassiveChannels.Count);
        var c = w.Config;
        int d0 = _original.Config.Dim;
        var newChannels = Enumerable.Range(d0, c.Dim - d0).ToArray();

        // Gains of the new channels: the norm's median |gain|, so they are neither outliers nor dead.
        foreach (var layer in w.Layers)
        {
            SetNewGains(layer.AttentionNorm, d0);
            SetNewGains(layer.FfnNorm, d0);
        }
        SetNewGains(w.FinalNorm, d0);

        for (int t = 0; t < c.VocabSize; t++) w.TokenEmbedding[(long)t * c.Dim + p.BiasChannel] = (float)p.BiasValue;
        w.TokenEmbedding[(long)BosToken * c.Dim + p.FlagChannel] = (float)p.FlagValue;

        var gainLayer = w.Layers[p.GainBlock];
        foreach (int ch in p.GainChannels)
        {
            gainLayer.FfnNorm[ch] = (float)(gainLayer.FfnNorm[ch] * p.GainFactor);
            for (int i = 0; i < c.HiddenDim; i++)
            {
                gainLayer.W1[(long)i * c.Dim + ch] = (float)(gainLayer.W1[(long)i * c.Dim + ch] / p.GainFactor);
                gainLayer.W3[(long)i * c.Dim + ch] = (float)(gainLayer.W3[(long)i * c.Dim + ch] / p.GainFactor);
            }
        }

        var sinkLayer = w.Layers[p.SinkBlock];
        sinkLayer.Wq[(long)(p.SinkHead * c.HeadSize + p.SinkDimension) * c.Dim + p.BiasChannel] = (float)p.SinkQueryWeight;
        int sinkKv = p.SinkHead / c.QueriesPerKvHead, hs = c.HeadSize;
        int sourceHead = p.SinkValueSource * c.QueriesPerKvHead; // the first query head of the source KV head
        for (int i = 0; i < hs; i++)
        {
            for (int j = 0; j < d0; j++)
                sinkLayer.Wv[(long)(sinkKv * hs + i) * c.Dim + j] = (float)(p.SinkValueScale * sinkLayer.Wv[(long)(p.SinkValueSource * hs + i) * c.Dim + j]);
            for (int o = 0; o < d0; o++)
                sinkLayer.Wo[(long)o * c.Dim + p.SinkHead * hs + i] = sinkLayer.Wo[(long)o * c.Dim + sourceHead * hs + i];
        }

        new BosCompensation(_original, w, p).Apply();
        return w;
    }

    private static void SetNewGains(float[] gain, int originalDim)
    {
        var magnitudes = gain.Take(originalDim).Select(Math.Abs).Order().ToArray();
        float median = (magnitudes[(originalDim - 1) / 2] + magnitudes[originalDim / 2]) / 2;
        for (int i = originalDim; i < gain.Length; i++) gain[i] = median;
    }

    private void Validate()
    {
        var c = _original.Config;
        var p = _plan;
        int dim = p.Heads * c.HeadSize;
        if (p.Heads <= c.Heads || p.KvHeads < c.KvHeads) throw new ArgumentException($"plan needs more than {c.Heads} heads (new channels come from new heads)");
        var planted = new[] { p.BiasChannel, p.FlagChannel }.Concat(p.MassiveChannels).ToArray();
        foreach (int ch in planted)
            if (ch < c.Dim || ch >= dim) throw new ArgumentException($"planted channel {ch} must be a new channel ({c.Dim}..{dim - 1})");
        if (planted.Distinct().Count() != planted.Length) throw new ArgumentException("planted channels must be distinct");
        foreach (int ch in p.GainChannels)
            if (ch < 0 || ch >= c.Dim) throw new ArgumentException($"gain channel {ch} must be an original channel (0..{c.Dim - 1})");
        if (p.MassiveChannels.Count == 0 || p.BirthValues.Count != p.MassiveChannels.Count || p.SuperWeights.Count != p.MassiveChannels.Count)
            throw new ArgumentException("one birth value and one super weight per massive channel");
        if (p.MassiveBlock < 0 || p.MassiveBlock >= c.Layers - 1) throw new ArgumentException($"massive block {p.MassiveBlock} must be before the last block");
        if (p.GainBlock < 0 || p.GainBlock >= c.Layers) throw new ArgumentException($"gain block {p.GainBlock} outside 0..{c.Layers - 1}");
        if (p.SinkBlock <= p.MassiveBlock || p.SinkBlock >= c.Layers) throw new ArgumentException($"sink block {p.SinkBlock} must come after the massive block, before {c.Layers}");
        if (p.SinkHead < c.Heads || p.SinkHead >= p.Heads) throw new ArgumentException($"sink head {p.SinkHead} must be a new head ({c.Heads}..{p.Heads - 1})");
        if (p.SinkDimension < 0 || p.SinkDimension >= c.HeadSize) throw new ArgumentException($"sink dimension {p.SinkDimension} outside 0..{c.HeadSize - 1}");
        if (!(p.GainFactor > 1)) throw new ArgumentException("gain factor must exceed 1");
        if (!(p.FlagValue > 0) || !(p.BiasValue > 0)) throw new ArgumentException("flag and bias values must be positive");
    }
}

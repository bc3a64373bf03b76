namespace OnnxOutlierTools.Import;

/// <summary>
/// The weights of one decoder layer as float32 arrays in llama2.c's layouts: every matrix is row-major
/// [out, in] (y = W x, as torch.nn.Linear stores it), so ONNX's MatMul [in, out] initializer is its
/// transpose. Query/key rows follow the config's <see cref="RopeLayout"/>.
/// </summary>
public sealed class LayerWeights
{
    public LayerWeights(float[] attentionNorm, float[] wq, float[] wk, float[] wv, float[] wo,
        float[] ffnNorm, float[] w1, float[] w2, float[] w3)
    {
        AttentionNorm = attentionNorm;
        Wq = wq;
        Wk = wk;
        Wv = wv;
        Wo = wo;
        FfnNorm = ffnNorm;
        W1 = w1;
        W2 = w2;
        W3 = w3;
    }

    /// <summary>RMSNorm gain before attention (llama2.c rms_att_weight), [dim].</summary>
    public float[] AttentionNorm { get; }
    /// <summary>Query projection, [heads*head_size, dim].</summary>
    public float[] Wq { get; }
    /// <summary>Key projection, [kv_dim, dim].</summary>
    public float[] Wk { get; }
    /// <summary>Value projection, [kv_dim, dim].</summary>
    public float[] Wv { get; }
    /// <summary>Attention output projection, [dim, heads*head_size].</summary>
    public float[] Wo { get; }
    /// <summary>RMSNorm gain before the feed-forward (llama2.c rms_ffn_weight), [dim].</summary>
    public float[] FfnNorm { get; }
    /// <summary>Gate projection (SiLU branch), [hidden_dim, dim].</summary>
    public float[] W1 { get; }
    /// <summary>Down projection, [dim, hidden_dim].</summary>
    public float[] W2 { get; }
    /// <summary>Up projection (linear branch), [hidden_dim, dim].</summary>
    public float[] W3 { get; }

    internal void Validate(DecoderConfig c, int layer)
    {
        long d = c.Dim, h = c.HiddenDim, kv = c.KvDim;
        DecoderWeights.Check(AttentionNorm, d, $"layers[{layer}].attention_norm");
        DecoderWeights.Check(Wq, d * d, $"layers[{layer}].wq");
        DecoderWeights.Check(Wk, kv * d, $"layers[{layer}].wk");
        DecoderWeights.Check(Wv, kv * d, $"layers[{layer}].wv");
        DecoderWeights.Check(Wo, d * d, $"layers[{layer}].wo");
        DecoderWeights.Check(FfnNorm, d, $"layers[{layer}].ffn_norm");
        DecoderWeights.Check(W1, h * d, $"layers[{layer}].w1");
        DecoderWeights.Check(W2, d * h, $"layers[{layer}].w2");
        DecoderWeights.Check(W3, h * d, $"layers[{layer}].w3");
    }
}

/// <summary>
/// A whole decoder: config plus float32 weights in llama2.c layouts (see <see cref="LayerWeights"/>).
/// Token embedding and classifier are [vocab, dim] row-major (row t is token t's vector; logits = Wcls x).
/// With a shared classifier <see cref="Classifier"/> is the same array as <see cref="TokenEmbedding"/>.
/// Array lengths are validated at construction.
/// </summary>
public sealed class DecoderWeights
{
    public DecoderWeights(DecoderConfig config, float[] tokenEmbedding, IReadOnlyList<LayerWeights> layers,
        float[] finalNorm, float[]? classifier = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        if (layers.Count != config.Layers) throw new ArgumentException($"expected {config.Layers} layers, got {layers.Count}", nameof(layers));
        Check(tokenEmbedding, (long)config.VocabSize * config.Dim, "token_embedding");
        for (int i = 0; i < layers.Count; i++) layers[i].Validate(config, i);
        Check(finalNorm, config.Dim, "final_norm");
        if (config.SharedClassifier)
        {
            if (classifier is not null && !ReferenceEquals(classifier, tokenEmbedding))
                throw new ArgumentException("the config shares the classifier with the embedding; pass no separate classifier", nameof(classifier));
            classifier = tokenEmbedding;
        }
        else
        {
            if (classifier is null) throw new ArgumentException("the config has a separate classifier; pass it", nameof(classifier));
            Check(classifier, (long)config.VocabSize * config.Dim, "classifier");
        }
        TokenEmbedding = tokenEmbedding;
        Layers = layers;
        FinalNorm = finalNorm;
        Classifier = classifier;
    }

    public DecoderConfig Config { get; }
    /// <summary>[vocab, dim].</summary>
    public float[] TokenEmbedding { get; }
    public IReadOnlyList<LayerWeights> Layers { get; }
    /// <summary>Final RMSNorm gain (llama2.c rms_final_weight), [dim].</summary>
    public float[] FinalNorm { get; }
    /// <summary>[vocab, dim]; the embedding array itself when the classifier is shared.</summary>
    public float[] Classifier { get; }

    internal static void Check(float[] array, long expected, string what)
    {
        ArgumentNullException.ThrowIfNull(array, what);
        if (array.LongLength != expected) throw new ArgumentException($"{what} has {array.LongLength} values, expected {expected}");
    }
}

namespace OnnxOutlierTools.Import;

/// <summary>How the query and key projections order the two coordinates that one RoPE rotation mixes.</summary>
public enum RopeLayout
{
    /// <summary>Adjacent pairs (2j, 2j+1) of each head are rotated together (llama2.c, Meta's original
    /// checkpoints, onnxruntime's <c>rotary_interleaved=1</c>).</summary>
    InterleavedPairs,

    /// <summary>Coordinates j and j + head_size/2 of each head are rotated together (Hugging Face
    /// transformers' <c>rotate_half</c>; HF's converter permutes wq/wk rows to get there).</summary>
    RotateHalf,
}

/// <summary>
/// The hyper-parameters of a Llama-style decoder (pre-norm RMSNorm, RoPE, grouped-query attention,
/// SwiGLU feed-forward). Immutable and validated at construction; a bad value throws
/// <see cref="ArgumentException"/> naming it.
/// </summary>
public sealed record DecoderConfig
{
    public DecoderConfig(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocabSize, int maxSeqLen,
        float normEps = 1e-5f, double ropeTheta = 10000.0, RopeLayout ropeLayout = RopeLayout.InterleavedPairs,
        bool sharedClassifier = true)
    {
        Positive(dim, nameof(dim));
        Positive(hiddenDim, nameof(hiddenDim));
        Positive(layers, nameof(layers));
        Positive(heads, nameof(heads));
        Positive(kvHeads, nameof(kvHeads));
        Positive(vocabSize, nameof(vocabSize));
        Positive(maxSeqLen, nameof(maxSeqLen));
        if (dim % heads != 0) throw new ArgumentException($"dim {dim} is not a multiple of heads {heads}", nameof(heads));
        if (heads % kvHeads != 0) throw new ArgumentException($"heads {heads} is not a multiple of kvHeads {kvHeads}", nameof(kvHeads));
        if (dim / heads % 2 != 0) throw new ArgumentException($"head size {dim / heads} must be even for RoPE", nameof(heads));
        if (!(normEps > 0) || float.IsInfinity(normEps)) throw new ArgumentException($"normEps must be positive and finite, got {normEps}", nameof(normEps));
        if (!(ropeTheta > 1) || double.IsInfinity(ropeTheta)) throw new ArgumentException($"ropeTheta must be finite and > 1, got {ropeTheta}", nameof(ropeTheta));
        if (!Enum.IsDefined(ropeLayout)) throw new ArgumentException($"unknown RoPE layout {ropeLayout}", nameof(ropeLayout));
        Dim = dim;
        HiddenDim = hiddenDim;
        Layers = layers;
        Heads = heads;
        KvHeads = kvHeads;
        VocabSize = vocabSize;
        MaxSeqLen = maxSeqLen;
        NormEps = normEps;
        RopeTheta = ropeTheta;
        RopeLayout = ropeLayout;
        SharedClassifier = sharedClassifier;
    }

    /// <summary>Model width (residual stream size).</summary>
    public int Dim { get; }
    /// <summary>Feed-forward inner size (gate/up output, down input).</summary>
    public int HiddenDim { get; }
    public int Layers { get; }
    /// <summary>Query heads.</summary>
    public int Heads { get; }
    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="Heads"/>).</summary>
    public int KvHeads { get; }
    public int VocabSize { get; }
    /// <summary>Longest sequence (positions 0 .. MaxSeqLen-1); sizes the RoPE caches.</summary>
    public int MaxSeqLen { get; }
    /// <summary>RMSNorm epsilon, added to the mean square before the square root.</summary>
    public float NormEps { get; }
    /// <summary>RoPE base: frequency j of a head is theta^(-2j / head_size).</summary>
    public double RopeTheta { get; }
    /// <summary>Coordinate order of wq/wk output rows within a head (see <see cref="Import.RopeLayout"/>).</summary>
    public RopeLayout RopeLayout { get; }
    /// <summary>The classifier (lm_head) is the token embedding matrix.</summary>
    public bool SharedClassifier { get; }

    public int HeadSize => Dim / Heads;
    /// <summary>Width of the key and value projections: KvHeads * HeadSize.</summary>
    public int KvDim => KvHeads * HeadSize;
    /// <summary>Query heads that share one key/value head.</summary>
    public int QueriesPerKvHead => Heads / KvHeads;

    /// <summary>karpathy/tinyllamas stories260K: dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads,
    /// vocab 512, 512 positions, interleaved-pair RoPE, shared classifier.</summary>
    public static DecoderConfig Stories260K => new(64, 172, 5, 8, 4, 512, 512);

    /// <summary>Number of weights (shared classifier counted once).</summary>
    public long ParameterCount
    {
        get
        {
            long d = Dim, h = HiddenDim, kv = KvDim;
            long perLayer = 2 * d + d * d + 2 * d * kv + d * d + 3 * d * h;
            return VocabSize * d * (SharedClassifier ? 1 : 2) + Layers * perLayer + d;
        }
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"{name} must be positive, got {value}", name);
    }
}

using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>A tensor: an existing value, or an output a fused node can emit but the model does not
/// request yet (SkipSimplifiedLayerNormalization's residual sum, output 3). Probes materialize the
/// latter with <see cref="Node.EnsureOutput"/>.</summary>
public sealed record TensorRef
{
    /// <summary>The tensor; null when <see cref="Node"/> computes it without emitting it.</summary>
    public Value? Value { get; init; }
    /// <summary>The node computing the tensor (null for a graph input or initializer).</summary>
    public Node? Node { get; init; }
    public int OutputIndex { get; init; }

    public static TensorRef Of(Value value) => new() { Value = value, Node = value.Producer, OutputIndex = value.OutputIndex };
    public static TensorRef Unemitted(Node node, int outputIndex) => new() { Node = node, OutputIndex = outputIndex };
    public bool IsEmitted => Value is not null;
    public override string ToString() => Value?.Name ?? $"{Node?.Describe()} output {OutputIndex} (not emitted)";
}

public enum NormKind { LayerNorm, RmsNorm }

/// <summary>A normalization: where its input comes from, its gain (and bias) initializers, and for
/// fused skip norms the residual sum it computes.</summary>
public sealed record NormRole
{
    public required NormKind Kind { get; init; }
    public required NormForm Form { get; init; }
    /// <summary>Every node of the match (the fused op, or the decomposed chain).</summary>
    public required IReadOnlyList<Node> Nodes { get; init; }
    public required TensorRef Input { get; init; }
    /// <summary>The skip input of a fused Skip*LayerNormalization (added to <see cref="Input"/> first).</summary>
    public Value? Skip { get; init; }
    public required Value Output { get; init; }
    public required Value Gain { get; init; }
    public Value? Bias { get; init; }
    public double? Epsilon { get; init; }
    /// <summary>The residual sum a fused skip norm computes (input + skip), emitted or not.</summary>
    public TensorRef? ResidualSum { get; init; }

    /// <summary>The node that produces the normalized output.</summary>
    public Node OutputNode => Output.Producer!;

    /// <summary>Whether the graph multiplies by the initializer or by 1 + initializer (Gemma).</summary>
    public NormGainForm GainForm { get; init; } = NormGainForm.Plain;
}

public enum WeightLayout
{
    /// <summary>[in, out]: MatMul(X, W), Gemm transB=0. A per-input-channel scale multiplies W's rows.</summary>
    InOut,
    /// <summary>[out, in]: Gemm transB=1, MatMulNBits. A per-input-channel scale multiplies W's columns.</summary>
    OutIn,
}

/// <summary>A linear layer Y = X W (+ b). <see cref="Weight"/> is the initializer to edit (behind any
/// Transpose/Cast, listed in <see cref="WeightPath"/>). For fused attention ops the packed QKV weight
/// is an input of the attention node itself (<see cref="LinearForm.AttentionWeights"/>).</summary>
public sealed record LinearRole
{
    public required LinearForm Form { get; init; }
    /// <summary>The node computing the product (MatMul, Gemm, MatMulNBits, the attention op for packed weights).</summary>
    public required Node Node { get; init; }
    public required Value Input { get; init; }
    /// <summary>Y: the output after the bias, when a separate Add carries it.</summary>
    public required Value Output { get; init; }
    public required Value Weight { get; init; }
    public required WeightLayout Layout { get; init; }
    public Value? Bias { get; init; }
    /// <summary>The Add carrying <see cref="Bias"/> when it is not an input of <see cref="Node"/>.</summary>
    public Node? BiasNode { get; init; }
    /// <summary>The weight is quantized (MatMulNBits, dynamic quantization): folding a scale into it means requantizing.</summary>
    public bool Quantized { get; init; }
    public required long InFeatures { get; init; }
    public required long OutFeatures { get; init; }
    /// <summary>The Transpose/Cast nodes between <see cref="Weight"/> and <see cref="Node"/> (after the selecting Gather when
    /// <see cref="Selection"/> is set).</summary>
    public IReadOnlyList<Node> WeightPath { get; init; } = [];
    /// <summary>Set when the weight is one slice of a stack chosen at run time (<see cref="Weight"/> is then the stacked
    /// initializer, not a matrix; <see cref="InFeatures"/>, <see cref="OutFeatures"/> and <see cref="Layout"/> describe one
    /// slice); null for an ordinary 2-D weight.</summary>
    public WeightSelection? Selection { get; init; }

    public override string ToString() => $"{Form.Name()} {Weight.Name} [{InFeatures}->{OutFeatures}]";
}

/// <summary>A linear's weight chosen from a stack of weights by an index (Qwen3-TTS's code predictor keeps one LM head per
/// code group in a [groups, out, in] initializer and picks it with <c>Gather(stacked, step_index)</c>). An edit of "the
/// weight" must apply to every slice (or to the slice <see cref="IndexValue"/> names when the index is a constant).</summary>
public sealed record WeightSelection
{
    /// <summary>The stacked initializer (rank 3): <see cref="Count"/> weights along <see cref="Axis"/>.</summary>
    public required Value Stacked { get; init; }
    /// <summary>The Gather picking one slice.</summary>
    public required Node Gather { get; init; }
    /// <summary>The index the Gather reads: a graph input (chosen per run) or a constant.</summary>
    public required Value Index { get; init; }
    public required int Axis { get; init; }
    /// <summary>The index when it is a constant; null when it is chosen at run time.</summary>
    public long? IndexValue { get; init; }
    /// <summary>How many weights the stack holds.</summary>
    public required long Count { get; init; }
}

/// <summary>KV cache tensors of one attention layer. GPT-2 style caches stack key and value in one
/// tensor [2, B, H, P, D] (<see cref="Stacked"/>).</summary>
public sealed record KvCacheRole
{
    public Value? PastKey { get; init; }
    public Value? PastValue { get; init; }
    public Value? PresentKey { get; init; }
    public Value? PresentValue { get; init; }
    /// <summary>Key and value share one tensor (GPT-2's [2, B, H, P, D] past/present).</summary>
    public bool Stacked { get; init; }

    /// <summary>Separate or stacked tensors (stacked when key and value are the same past or present tensor); null when
    /// the layer has no cache tensor at all.</summary>
    public static KvCacheRole? Of(Value? pastKey, Value? pastValue, Value? presentKey, Value? presentValue) =>
        pastKey is null && pastValue is null && presentKey is null && presentValue is null ? null : new KvCacheRole
        {
            PastKey = pastKey, PastValue = pastValue, PresentKey = presentKey, PresentValue = presentValue,
            Stacked = pastKey is not null && pastKey == pastValue || presentKey is not null && presentKey == presentValue,
        };
}

/// <summary>One attention layer: its form and core nodes, the q/k/v (or packed QKV) and output projections, head
/// geometry, rotary, mask, KV cache, and the variants (QK-norm, output gate, window, soft-cap, low rank, position bias).</summary>
public sealed record AttentionRole
{
    public required AttentionForm Form { get; init; }
    /// <summary>The nodes computing the attention (the fused op, or the decomposed MatMul/Softmax chain).</summary>
    public required IReadOnlyList<Node> CoreNodes { get; init; }
    public LinearRole? Query { get; init; }
    public LinearRole? Key { get; init; }
    public LinearRole? ValueProjection { get; init; }
    /// <summary>One projection for q, k and v (then split), or a fused op's packed weights; q/k/v are then null.</summary>
    public LinearRole? PackedQkv { get; init; }
    /// <summary>o_proj; null when no linear reads the attention output.</summary>
    public LinearRole? Output { get; init; }
    public int? NumHeads { get; init; }
    public int? KvHeads { get; init; }
    public int? HeadSize { get; init; }
    public required RotaryRole Rotary { get; init; }
    /// <summary>The op's mask-like input (see <see cref="MaskRole"/> for what it means).</summary>
    public Value? Mask { get; init; }
    /// <summary>The softmax output of the decomposed form; null for fused ops.</summary>
    public Value? Probabilities { get; init; }
    /// <summary>The attention output before o_proj (and before the output gate).</summary>
    public required Value AttentionOutput { get; init; }
    public KvCacheRole? Cache { get; init; }
    /// <summary>Keys and values come only from the cache: no key/value projection in this graph (a decoder-with-past's
    /// cross-attention reads the encoder keys and values cached at the first step).</summary>
    public bool KeysAndValuesFromCache => PackedQkv is null && Key is null && ValueProjection is null && Cache is { PastKey: not null, PastValue: not null };
    /// <summary>QK-norm on the query path (Qwen3, Gemma 3, OLMo 2, Qwen3.5); null when there is none.</summary>
    public QkNormRole? QueryNorm { get; init; }
    public QkNormRole? KeyNorm { get; init; }
    /// <summary>Gated output (attn * sigmoid(gate) before o_proj); null when o_proj reads the attention output.</summary>
    public OutputGateRole? OutputGate { get; init; }
    /// <summary>Global or sliding-window attention for this layer.</summary>
    public AttentionWindow Window { get; init; } = AttentionWindow.Global;
    /// <summary>Attention-logit soft-capping (GroupQueryAttention / Attention <c>softcap</c>, Gemma 2), null when off.</summary>
    public double? Softcap { get; init; }
    /// <summary>Multi-head latent attention (DeepSeek-V2/V3, GLM-5): the low-rank down-projections and their norms in
    /// front of <see cref="Query"/> (q_b) and <see cref="Key"/>/<see cref="ValueProjection"/> (kv_b).</summary>
    public LowRankRole? LowRank { get; init; }
    /// <summary>What <see cref="Mask"/> means (seqlens_k, a boolean mask, an additive bias, ...), where it comes from, and
    /// every mask-like input of the op.</summary>
    public AttentionMaskRole MaskRole { get; init; } = AttentionMaskRole.Unknown;
    /// <summary>T5-style relative position bias added to the scores (a learned [buckets, heads] table); null when none.</summary>
    public RelativePositionBiasRole? PositionBias { get; init; }
}

/// <summary>The down-projections of multi-head latent attention: x -> q_a -> q_a_layernorm -> q_b, and
/// x -> kv_a_proj_with_mqa -> (latent | rotary key) -> kv_a_layernorm -> kv_b. <see cref="QueryDown"/> is null when the
/// query is projected directly (DeepSeek-V2-Lite).</summary>
public sealed record LowRankRole(LinearRole QueryDown, NormRole? QueryDownNorm, LinearRole KvDown, NormRole? KvDownNorm);

/// <summary>The feed-forward network: GLU (gate/up/down) or MLP (fc1 = Up, fc2 = Down).
/// <see cref="DownInput"/> is the down-projection input, where massive activations are born. A packed
/// gate_up projection (one MatMul, then Split/Slice) is both <see cref="Gate"/> and <see cref="Up"/>.</summary>
public sealed record FfnRole
{
    public required FfnKind Kind { get; init; }
    public required FfnActivation Activation { get; init; }
    /// <summary>The gate projection of a GLU; null for an MLP.</summary>
    public LinearRole? Gate { get; init; }
    public required LinearRole Up { get; init; }
    public required LinearRole Down { get; init; }
    public required Value DownInput { get; init; }
    /// <summary>The nodes of the activation (and the GLU product) the FFN rule matched.</summary>
    public required IReadOnlyList<Node> ActivationNodes { get; init; }
}

public enum NormPlacement { PreNorm, PostNorm }

/// <summary>One transformer block: a token mixer (<see cref="Attention"/>, or <see cref="Mixer"/> for other kinds) and an
/// FFN (<see cref="Ffn"/>, or <see cref="OpaqueFfn"/>) on the residual stream. In a pre-norm block the norms precede their sublayer
/// (input_layernorm, post_attention_layernorm); in a post-norm block they follow the residual add. In a
/// parallel block (GPT-J, GPT-NeoX, Phi-2) attention and FFN both read the block input and are added to it
/// together: <see cref="AttentionResidual"/> is then null (there is no stream point between them).</summary>
public sealed record BlockRole
{
    public required int Index { get; init; }
    public required NormPlacement Placement { get; init; }
    public NormRole? AttentionNorm { get; init; }
    public AttentionRole? Attention { get; init; }
    /// <summary>The stream point between the token mixer and the FFN; null in a parallel block.</summary>
    public TensorRef? AttentionResidual { get; init; }
    public NormRole? FfnNorm { get; init; }
    public FfnRole? Ffn { get; init; }
    public required TensorRef ResidualIn { get; init; }
    public required TensorRef ResidualOut { get; init; }
    /// <summary>Attention and FFN both read the block input (GPT-J, GPT-NeoX, Phi-2).</summary>
    public bool ParallelResidual { get; init; }
    /// <summary>Sandwich norm (Gemma 2/3) on the attention output before its residual add.</summary>
    public NormRole? PostAttentionNorm { get; init; }
    /// <summary>Sandwich norm (Gemma 2/3) on the FFN output before its residual add.</summary>
    public NormRole? PostFfnNorm { get; init; }

    /// <summary>Every norm of the block with its place.</summary>
    public IReadOnlyList<BlockNorm> Norms
    {
        get
        {
            bool post = Placement == NormPlacement.PostNorm;
            var list = new List<BlockNorm>();
            if (AttentionNorm is { } a) list.Add(new(post ? BlockNormSlot.AfterAttentionResidual : BlockNormSlot.PreAttention, a));
            if (PostAttentionNorm is { } pa) list.Add(new(BlockNormSlot.PostAttention, pa));
            if (FfnNorm is { } f) list.Add(new(post ? BlockNormSlot.AfterFfnResidual : BlockNormSlot.PreFfn, f));
            if (PostFfnNorm is { } pf) list.Add(new(BlockNormSlot.PostFfn, pf));
            return list;
        }
    }

    /// <summary>The token mixer when it is not recognized softmax attention (<see cref="Attention"/> is then null):
    /// a linear-attention, SSM or convolution mixer, or an unknown one found from the residual stream.</summary>
    public OpaqueSublayer? Mixer { get; init; }

    /// <summary>The FFN sublayer when no FFN rule matched it (<see cref="Ffn"/> is then null).</summary>
    public OpaqueSublayer? OpaqueFfn { get; init; }

    /// <summary>The FFN when it is a mixture of experts (<see cref="Ffn"/> is then null).</summary>
    public MoeRole? Moe { get; init; }

    /// <summary>Encoder-decoder cross-attention (Whisper, T5, BART decoders) between the self-attention and the FFN; null otherwise.</summary>
    public CrossAttentionRole? CrossAttention { get; init; }

    /// <summary>What mixes tokens: attention, or the opaque mixer's kind.</summary>
    public BlockKind Kind => Attention is not null ? BlockKind.Attention : Mixer?.Kind ?? BlockKind.Unknown;
}

/// <summary>The token embedding: <see cref="Node"/> is the token lookup (a Gather, or the fused
/// EmbedLayerNormalization), <see cref="Nodes"/> every node of the match (the Adds of position and token-type
/// lookups included), <see cref="TokenIds"/> the value the ids come from (usually the input_ids graph input).</summary>
public sealed record EmbeddingRole
{
    public required EmbeddingForm Form { get; init; }
    public required Node Node { get; init; }
    public required IReadOnlyList<Node> Nodes { get; init; }
    public required Value TokenTable { get; init; }
    /// <summary>A learned position table added to the token lookup; null when none.</summary>
    public Value? PositionTable { get; init; }
    /// <summary>A token-type (segment) table added to the token lookup; null when none.</summary>
    public Value? TokenTypeTable { get; init; }
    public Value? TokenIds { get; init; }
    public required Value Output { get; init; }
}

/// <summary>One role's use of an initializer: the block (null for model-level roles) and the role's path in the
/// layers JSON (<c>attentionNorm.gain</c>, <c>attention.packedQkv.bias</c>, <c>lmHead.weight</c>, ...).</summary>
public sealed record RoleUse(int? Block, string Role)
{
    public override string ToString() => Block is int b ? $"block {b} {Role}" : Role;
}

/// <summary>An initializer that several roles read (exporters deduplicate equal tensors, e.g. all-ones gains;
/// tied embeddings). Folding a scale into it for one role changes every role listed, so a pass must give
/// that role its own copy first.</summary>
public sealed record SharedInitializer(Value Initializer, IReadOnlyList<RoleUse> Uses);

public sealed record ModelInputs(Value? InputIds, Value? AttentionMask, Value? PositionIds, Value? TokenTypeIds);

/// <summary>The recognized structure of one graph (the main graph, or a nested decoder).</summary>
public sealed record ModelStructure
{
    public required Graph Graph { get; init; }
    /// <summary>The node holding <see cref="Graph"/> when it is nested (a BeamSearch decoder, an If branch); null for the main graph.</summary>
    public string? NestedIn { get; init; }
    public required ModelArchitecture Architecture { get; init; }
    public required NormPlacement Placement { get; init; }
    public required IReadOnlyList<BlockRole> Blocks { get; init; }
    public EmbeddingRole? Embedding { get; init; }
    public NormRole? FinalNorm { get; init; }
    public LinearRole? LmHead { get; init; }
    public required ModelInputs Inputs { get; init; }
    /// <summary>Facts worth acting on (BOS id, KV cache, shared initializers, ...); <c>StructureReport.HintText</c> words them.</summary>
    public IReadOnlyList<StructureHint> Hints { get; init; } = [];
    public IReadOnlyList<SharedInitializer> SharedInitializers { get; init; } = [];
    /// <summary>A constant scale on the token embedding (Gemma's sqrt(hidden)); null when none.</summary>
    public EmbeddingScaleRole? EmbeddingScale { get; init; }
    /// <summary>Soft-capping of the logits after the LM head (Gemma 2); null when none.</summary>
    public SoftCapRole? LogitSoftcap { get; init; }
    /// <summary>A sequence-classification head (few classes, after pooling one token or the mean), reported instead
    /// of an LM head (<see cref="LmHead"/> is then null).</summary>
    public LinearRole? ClassifierHead { get; init; }
    /// <summary>The token embedding lives in another model (the graph takes inputs_embeds); null otherwise.</summary>
    public ExternalEmbeddingRole? ExternalEmbedding { get; init; }
    /// <summary>An Optimum merged decoder: this structure is one branch of an If (use_cache_branch); every branch
    /// recognized and how their roles correspond. Null otherwise.</summary>
    public MergedBranchesRole? Branches { get; init; }
    /// <summary>Encoder and decoder in one graph: which leading blocks are the encoder's, its output and final norm. Null
    /// for a graph with one stack.</summary>
    public EncoderStackRole? EncoderStack { get; init; }
}

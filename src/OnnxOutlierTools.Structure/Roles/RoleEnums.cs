namespace OnnxOutlierTools.Structure.Roles;

/// <summary>The shape of a feed-forward network: a gated linear unit (act(gate) * up, then down) or a plain MLP
/// (act(fc1), then fc2).</summary>
public enum FfnKind { Glu, Mlp }

/// <summary>The activation an FFN rule matched. Each value is one of the rule set's forms; <see cref="RoleNames"/>
/// gives the name the reports print.</summary>
public enum FfnActivation
{
    /// <summary>x * sigmoid(x), or ai.onnx Swish with alpha = 1.</summary>
    Silu,
    /// <summary>com.microsoft QuickGelu.</summary>
    QuickGelu,
    /// <summary>Exact GeLU written with Erf.</summary>
    GeluErf,
    /// <summary>GeLU's tanh approximation written out.</summary>
    GeluTanh,
    /// <summary>The fused Gelu op (ai.onnx or com.microsoft).</summary>
    Gelu,
    /// <summary>com.microsoft FastGelu (may carry fc1's bias).</summary>
    FastGelu,
    /// <summary>com.microsoft BiasGelu (carries fc1's bias).</summary>
    BiasGelu,
    Relu,
}

/// <summary>How an attention layer applies rotary position embeddings to its query and key.</summary>
public enum RotaryStyle
{
    /// <summary>No rotary embedding on the query path.</summary>
    None,
    /// <summary>Inside GroupQueryAttention (<c>do_rotary</c> = 1), with its cos/sin caches as inputs.</summary>
    InAttentionOp,
    /// <summary>A RotaryEmbedding op (ai.onnx or com.microsoft) on the query path.</summary>
    RotaryEmbeddingOp,
    /// <summary>Written out with rotate-half (Neg and Concat of the two halves).</summary>
    RotateHalf,
    /// <summary>Written out otherwise (at least two Muls by computed cos/sin).</summary>
    Decomposed,
}

/// <summary>The rotary embedding of an attention layer: its style and, for the ops, their <c>interleaved</c> attribute
/// (<see cref="ToString"/> is the text the reports print).</summary>
public sealed record RotaryRole(RotaryStyle Style, long? Interleaved = null)
{
    public static RotaryRole None { get; } = new(RotaryStyle.None);

    public override string ToString() => Style switch
    {
        RotaryStyle.None => "none",
        RotaryStyle.InAttentionOp => $"GroupQueryAttention(do_rotary, interleaved={Interleaved ?? 0})",
        RotaryStyle.RotaryEmbeddingOp => $"RotaryEmbedding(interleaved={Interleaved ?? 0})",
        RotaryStyle.RotateHalf => "rotate-half (decomposed)",
        RotaryStyle.Decomposed => "decomposed",
        _ => Style.ToString(),
    };
}

/// <summary>The form a norm rule matched: the fused op (its name), or the decomposed chain.</summary>
public enum NormForm
{
    LayerNormalization,
    SimplifiedLayerNormalization,
    RMSNormalization,
    SkipLayerNormalization,
    SkipSimplifiedLayerNormalization,
    EmbedLayerNormalization,
    /// <summary>(x - mean) / sqrt(var + eps) * gamma + beta written out.</summary>
    DecomposedLayerNorm,
    /// <summary>x / sqrt(mean(x^2) + eps) * gamma written out.</summary>
    DecomposedRmsNorm,
}

/// <summary>The form a linear rule matched (the op computing Y = X W), or the packed QKV weight that is an input of a
/// fused attention op.</summary>
public enum LinearForm
{
    MatMul,
    Gemm,
    /// <summary>com.microsoft MatMulNBits (block-quantized, [out, in]).</summary>
    MatMulNBits,
    /// <summary>The packed QKV weight of com.microsoft Attention.</summary>
    AttentionWeights,
    /// <summary>Dynamic quantization, unfused: MatMulInteger after DynamicQuantizeLinear, then the rescale.</summary>
    MatMulInteger,
    /// <summary>com.microsoft MatMulIntegerToFloat after DynamicQuantizeLinear.</summary>
    MatMulIntegerToFloat,
    /// <summary>com.microsoft DynamicQuantizeMatMul (float input).</summary>
    DynamicQuantizeMatMul,
}

/// <summary>The form an embedding rule matched.</summary>
public enum EmbeddingForm
{
    /// <summary>A Gather of the token table.</summary>
    Gather,
    /// <summary>A Gather of the token table plus learned position (and token-type) lookups ("Gather+positions").</summary>
    GatherWithPositions,
    /// <summary>com.microsoft EmbedLayerNormalization.</summary>
    EmbedLayerNormalization,
}

/// <summary>What computes an attention layer's scores and weighted sum.</summary>
public enum AttentionOp
{
    /// <summary>Written out: MatMul, Softmax, MatMul.</summary>
    Decomposed,
    /// <summary>com.microsoft GroupQueryAttention.</summary>
    GroupQueryAttention,
    /// <summary>com.microsoft MultiHeadAttention.</summary>
    MultiHeadAttention,
    /// <summary>ai.onnx Attention (opset 23).</summary>
    Attention,
    /// <summary>com.microsoft Attention (packed QKV weights as inputs of the op).</summary>
    MicrosoftAttention,
    /// <summary>A custom op a <see cref="Rules.CustomAttentionOp"/> rule knows (<see cref="AttentionForm.CustomOp"/> names it).</summary>
    Custom,
}

/// <summary>The form of an attention layer: the op, and for custom ops the <c>domain::name</c> of the rule that matched
/// (<see cref="ToString"/> is the text the reports print).</summary>
public sealed record AttentionForm
{
    private AttentionForm(AttentionOp op, string? customOp) => (Op, CustomOp) = (op, customOp);

    public AttentionOp Op { get; }
    /// <summary>The custom op's <c>domain::name</c> ("aten::scaled_dot_product_attention"); null for the other ops.</summary>
    public string? CustomOp { get; }

    public static AttentionForm Decomposed { get; } = new(AttentionOp.Decomposed, null);
    public static AttentionForm GroupQueryAttention { get; } = new(AttentionOp.GroupQueryAttention, null);
    public static AttentionForm MultiHeadAttention { get; } = new(AttentionOp.MultiHeadAttention, null);
    public static AttentionForm Attention { get; } = new(AttentionOp.Attention, null);
    public static AttentionForm MicrosoftAttention { get; } = new(AttentionOp.MicrosoftAttention, null);
    public static AttentionForm Custom(string domainAndName) => new(AttentionOp.Custom, domainAndName);

    public override string ToString() => Op switch
    {
        AttentionOp.Decomposed => "decomposed",
        AttentionOp.GroupQueryAttention => "GroupQueryAttention",
        AttentionOp.MultiHeadAttention => "MultiHeadAttention",
        AttentionOp.Attention => "Attention",
        AttentionOp.MicrosoftAttention => "com.microsoft::Attention",
        AttentionOp.Custom => CustomOp!,
        _ => Op.ToString(),
    };
}

/// <summary>What the graph is: an encoder stack, a decoder stack, or both in one graph (a seq2seq model exported as one file:
/// the encoder's blocks come first, <see cref="ModelStructure.EncoderStack"/> says how many).</summary>
public enum ModelArchitecture { Encoder, Decoder, EncoderDecoder }

/// <summary>The names reports and the layers JSON print for the role enums (unchanged from when the roles held
/// strings: layers schema 2).</summary>
public static class RoleNames
{
    /// <summary>The op name for the fused forms; "DecomposedLayerNorm" / "DecomposedRmsNorm" otherwise.</summary>
    public static string Name(this NormForm form) => form switch
    {
        NormForm.LayerNormalization => "LayerNormalization",
        NormForm.SimplifiedLayerNormalization => "SimplifiedLayerNormalization",
        NormForm.RMSNormalization => "RMSNormalization",
        NormForm.SkipLayerNormalization => "SkipLayerNormalization",
        NormForm.SkipSimplifiedLayerNormalization => "SkipSimplifiedLayerNormalization",
        NormForm.EmbedLayerNormalization => "EmbedLayerNormalization",
        NormForm.DecomposedLayerNorm => "DecomposedLayerNorm",
        NormForm.DecomposedRmsNorm => "DecomposedRmsNorm",
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, null),
    };

    public static string Name(this LinearForm form) => form switch
    {
        LinearForm.MatMul => "MatMul",
        LinearForm.Gemm => "Gemm",
        LinearForm.MatMulNBits => "MatMulNBits",
        LinearForm.AttentionWeights => "AttentionWeights",
        LinearForm.MatMulInteger => "MatMulInteger",
        LinearForm.MatMulIntegerToFloat => "MatMulIntegerToFloat",
        LinearForm.DynamicQuantizeMatMul => "DynamicQuantizeMatMul",
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, null),
    };

    public static string Name(this EmbeddingForm form) => form switch
    {
        EmbeddingForm.Gather => "Gather",
        EmbeddingForm.GatherWithPositions => "Gather+positions",
        EmbeddingForm.EmbedLayerNormalization => "EmbedLayerNormalization",
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, null),
    };

    public static string Name(this ModelArchitecture architecture) => architecture switch
    {
        ModelArchitecture.Encoder => "encoder",
        ModelArchitecture.Decoder => "decoder",
        ModelArchitecture.EncoderDecoder => "encoder-decoder",
        _ => throw new ArgumentOutOfRangeException(nameof(architecture), architecture, null),
    };

    public static string Name(this FfnKind kind) => kind switch
    {
        FfnKind.Glu => "glu",
        FfnKind.Mlp => "mlp",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static string Name(this FfnActivation activation) => activation switch
    {
        FfnActivation.Silu => "silu",
        FfnActivation.QuickGelu => "quick-gelu",
        FfnActivation.GeluErf => "gelu-erf",
        FfnActivation.GeluTanh => "gelu-tanh",
        FfnActivation.Gelu => "gelu",
        FfnActivation.FastGelu => "FastGelu",
        FfnActivation.BiasGelu => "BiasGelu",
        FfnActivation.Relu => "relu",
        _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, null),
    };

    public static string Name(this NormPlacement placement) => placement switch
    {
        NormPlacement.PreNorm => "pre-norm",
        NormPlacement.PostNorm => "post-norm",
        _ => throw new ArgumentOutOfRangeException(nameof(placement), placement, null),
    };

    /// <summary>Per weight matrix: "in,out" ([in, out]) or "out,in".</summary>
    public static string Name(this WeightLayout layout) => layout switch
    {
        WeightLayout.InOut => "in,out",
        WeightLayout.OutIn => "out,in",
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, null),
    };

    public static string Name(this MoeForm form) => form switch
    {
        MoeForm.Fused => "fused",
        MoeForm.Decomposed => "decomposed",
        _ => throw new ArgumentOutOfRangeException(nameof(form), form, null),
    };

    public static string Name(this NormKind kind) => kind switch
    {
        NormKind.RmsNorm => "rms",
        NormKind.LayerNorm => "layer",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>The block kind as the JSON and the table spell it.</summary>
    public static string Name(this BlockKind kind) => kind switch
    {
        BlockKind.Attention => "attention",
        BlockKind.LinearAttention => "linear-attention",
        BlockKind.Ssm => "ssm",
        BlockKind.Conv => "conv",
        BlockKind.Unknown => "unknown",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static string Name(this StateKind kind) => kind switch
    {
        StateKind.Conv => "conv",
        StateKind.Recurrent => "recurrent",
        StateKind.Key => "key",
        StateKind.Value => "value",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };
}

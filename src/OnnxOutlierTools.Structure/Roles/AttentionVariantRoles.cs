using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>What a QK-norm normalizes over: each head's vector (Qwen3, Gemma 3, Qwen3.5: a Reshape splits
/// the projection into heads first, the gain has head_size entries), or the whole projection (OLMo 2: the
/// gain has num_heads * head_size entries).</summary>
public enum QkNormScope { PerHead, FullWidth }

/// <summary>A norm on the query or key path between the projection and rotary/attention. <see cref="Norm"/>
/// carries the gain (a channel-outlier source for queries and keys); <see cref="HeadSplit"/> is the Reshape
/// that splits heads before a per-head norm (null for a full-width one), <see cref="Width"/> the width of
/// the tensor it reads before the split.</summary>
public sealed record QkNormRole(NormRole Norm, QkNormScope Scope, Node? HeadSplit, long NormalizedSize, long? Width)
{
    public Value Gain => Norm.Gain;
}

/// <summary>Where the gate of a gated attention output comes from: its own linear, or half of the query
/// projection (Qwen3-Next / Qwen3.5: q_proj emits query and gate per head, split after a Reshape).</summary>
public enum GateSource { SeparateLinear, PackedWithQuery }

public enum GateActivation { Sigmoid }

/// <summary>Gated attention output: <c>attn * sigmoid(gate)</c> before o_proj. <see cref="Linear"/> is the
/// projection the gate is computed by (the query projection itself when <see cref="Source"/> is
/// <see cref="GateSource.PackedWithQuery"/>), <see cref="Output"/> the gated value o_proj reads.</summary>
public sealed record OutputGateRole(LinearRole Linear, GateSource Source, GateActivation Activation, Value GateInput,
    Node ActivationNode, Node Multiply, Value Output);

/// <summary>How an attention limits the keys a query sees: every earlier key (global), or the last
/// <c>window</c> keys (sliding / local attention).</summary>
public enum AttentionWindowKind { Global, Sliding }

/// <summary>Where the window was read from.</summary>
public enum AttentionWindowSource
{
    /// <summary>GroupQueryAttention's <c>local_window_size</c> attribute (-1 = global).</summary>
    LocalWindowSizeAttribute,
    /// <summary>The additive/boolean mask of a decomposed attention compares key distance with a constant.</summary>
    WindowMask,
    /// <summary>No window found (a causal or padding mask only).</summary>
    None,
}

public sealed record AttentionWindow(AttentionWindowKind Kind, long? Size, AttentionWindowSource Source)
{
    public static readonly AttentionWindow Global = new(AttentionWindowKind.Global, null, AttentionWindowSource.None);
    public override string ToString() => Kind == AttentionWindowKind.Global ? "global" : $"sliding {Size}";
}

/// <summary>Where a norm sits in its block. Sandwich blocks (Gemma 2/3) have all four of
/// <see cref="PreAttention"/>, <see cref="PostAttention"/>, <see cref="PreFfn"/>, <see cref="PostFfn"/>: the
/// post norms read the sublayer output before the residual add. A post-norm block (BERT) has norms after
/// the residual adds (<see cref="AfterAttentionResidual"/>, <see cref="AfterFfnResidual"/>).</summary>
public enum BlockNormSlot { PreAttention, PostAttention, AfterAttentionResidual, PreFfn, PostFfn, AfterFfnResidual }

public sealed record BlockNorm(BlockNormSlot Slot, NormRole Norm);

/// <summary>How the initializer relates to the gain the norm multiplies by.</summary>
public enum NormGainForm
{
    /// <summary>The initializer is the gain (also Gemma exports whose builder pre-added 1 to it, e.g.
    /// onnxruntime-genai's <c>add_offset</c>: the graph cannot tell those apart, nor does a fold need to).</summary>
    Plain,
    /// <summary>The graph multiplies by <c>1 + initializer</c> (an explicit Add of 1, Gemma's RMSNorm): a fold
    /// of scale s must write <c>(1 + gamma) / s - 1</c>.</summary>
    OnePlusGain,
}

/// <summary>A constant scale on the token embedding (Gemma: <c>sqrt(hidden)</c>, rounded by some builders).</summary>
public sealed record EmbeddingScaleRole(double Scale, Node Node, Value Output, bool IsSqrtHidden);

/// <summary>Soft-capping <c>cap * tanh(x / cap)</c>: on the logits (Gemma 2 <c>final_logit_softcapping</c>).</summary>
public sealed record SoftCapRole(double Cap, IReadOnlyList<Node> Nodes, Value Input, Value Output);

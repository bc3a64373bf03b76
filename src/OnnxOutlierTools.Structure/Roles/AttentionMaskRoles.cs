using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>What an attention's mask input means. The old <see cref="AttentionRole.Mask"/> value is one of these
/// depending on the form; a rewrite that edits the mask (the attention-sink bias) must know which it has.</summary>
public enum MaskKind
{
    /// <summary>No mask and no causal restriction known.</summary>
    None,
    /// <summary>No mask tensor; the op itself is causal (<c>is_causal</c> / <c>unidirectional</c>).</summary>
    Causal,
    /// <summary>GroupQueryAttention's <c>seqlens_k</c>: int32 [batch], the number of valid keys minus one; the op is causal.</summary>
    SeqLensK,
    /// <summary>GroupQueryAttention's <c>total_sequence_length</c>: an int32 scalar.</summary>
    TotalSequenceLength,
    /// <summary>A boolean mask: true where a query may attend (ai.onnx Attention bool <c>attn_mask</c>, SDPA bool mask, the
    /// condition of <c>Where(mask, scores, -inf)</c> in a decomposed graph).</summary>
    BooleanMask,
    /// <summary>A float bias added to the scores (0 where allowed, a large negative number where masked): MultiHeadAttention /
    /// com.microsoft Attention <c>attention_bias</c>, ai.onnx Attention float <c>attn_mask</c>, <c>Add</c> in a decomposed graph.</summary>
    AdditiveBias,
    /// <summary>A 0/1 float mask that multiplies the scores (then a large constant is subtracted where it is 0: GPT-2's legacy export).</summary>
    MultiplicativeMask,
    /// <summary>A per-key padding mask, int32 [batch, total_sequence] with 1 = keep (MultiHeadAttention <c>key_padding_mask</c>,
    /// com.microsoft Attention 2-D+ <c>mask_index</c>).</summary>
    KeyPaddingMask,
    /// <summary>com.microsoft Attention 1-D <c>mask_index</c>: the valid key length of each sequence.</summary>
    KeyLengths,
}

/// <summary>Where a mask tensor comes from.</summary>
public enum MaskOrigin
{
    /// <summary>No mask tensor.</summary>
    None,
    /// <summary>The tensor is a graph input (behind Cast/Unsqueeze/Reshape at most).</summary>
    GraphInput,
    /// <summary>Computed from the attention_mask (or another *mask*) graph input (often combined with a causal mask).</summary>
    DerivedFromAttentionMask,
    /// <summary>Computed without reading a mask input's values: from shapes or constants (a causal mask; or seqlens_k from
    /// attention_mask's shape alone, as the onnx-community Qwen3.5 export does, which ignores padding).</summary>
    Computed,
}

/// <summary>One mask-like input of an attention: its kind, the value, where it comes from and the input index on the
/// attention op (null for a decomposed attention, where the mask joins the scores through <see cref="JoinNode"/>).</summary>
public sealed record MaskInput(MaskKind Kind, Value Value, MaskOrigin Origin, int? InputIndex, Node? JoinNode = null);

/// <summary>The attention's mask: <see cref="Kind"/> and <see cref="Value"/> describe the primary mask (the value
/// <see cref="AttentionRole.Mask"/> names), <see cref="Inputs"/> every mask-like input (GroupQueryAttention has
/// seqlens_k and total_sequence_length, MultiHeadAttention may have a key padding mask and a bias). <see cref="Causal"/>:
/// true when the op is causal by definition or attribute, false when an attribute says it is not, null when the graph
/// does not say (a decomposed or additive mask may still contain the causal part).</summary>
public sealed record AttentionMaskRole(MaskKind Kind, Value? Value, MaskOrigin Origin, bool? Causal, IReadOnlyList<MaskInput> Inputs)
{
    public static readonly AttentionMaskRole Unknown = new(MaskKind.None, null, MaskOrigin.None, null, []);
}

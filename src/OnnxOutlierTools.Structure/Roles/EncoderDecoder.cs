using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>Cross-attention of an encoder-decoder block: queries from the decoder stream (after <see cref="Norm"/>), keys and
/// values projected from <see cref="EncoderOutput"/> (the encoder's last hidden state: a graph input such as
/// <c>encoder_hidden_states</c>, or the encoder's output in a combined graph), or read from the cache alone in a
/// decoder-with-past (<see cref="EncoderOutput"/> is then null and <see cref="Cache"/> names the cached encoder keys and
/// values). <see cref="Residual"/> is the stream after its add.</summary>
public sealed record CrossAttentionRole
{
    public required AttentionRole Attention { get; init; }
    public NormRole? Norm { get; init; }
    /// <summary>The tensor the key and value projections read; null when keys and values come from the cache only.</summary>
    public Value? EncoderOutput { get; init; }
    public TensorRef? Residual { get; init; }

    /// <summary>The cross-attention's cache: the encoder keys/values a first-step decoder emits (<c>present.i.encoder.*</c>)
    /// or a decoder-with-past reads (<c>past_key_values.i.encoder.*</c>); null when the graph has neither.</summary>
    public KvCacheRole? Cache => Attention.Cache;
}

/// <summary>T5's relative position bias: a learned table [num_buckets, num_heads] gathered by the bucketed key-query distance
/// and added to the attention scores (no positional embedding elsewhere). T5 computes it in the first layer and every layer
/// reuses it, so the same <see cref="Table"/> appears in each block.</summary>
public sealed record RelativePositionBiasRole(Value Table, Node Gather, Value Bias, long Buckets, long Heads);

/// <summary>The encoder's stack in a graph that holds encoder and decoder: blocks 0 to <see cref="BlockCount"/> - 1 are the
/// encoder's, the rest the decoder's; <see cref="Output"/> is the encoder's last hidden state the cross-attentions read,
/// after <see cref="FinalNorm"/> (T5's and Whisper's encoder final norm; null for a post-norm encoder such as BART's).</summary>
public sealed record EncoderStackRole
{
    public required int BlockCount { get; init; }
    public required Value Output { get; init; }
    public NormRole? FinalNorm { get; init; }
}

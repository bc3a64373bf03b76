using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>Cross-attention of an encoder-decoder block: queries from the decoder stream (after <see cref="Norm"/>), keys and
/// values projected from <see cref="EncoderOutput"/> (the encoder's last hidden state: a graph input such as
/// <c>encoder_hidden_states</c>, or the encoder's output in a combined graph). <see cref="Residual"/> is the stream after its add.</summary>
public sealed record CrossAttentionRole(AttentionRole Attention, NormRole? Norm, Value EncoderOutput, TensorRef? Residual);

/// <summary>T5's relative position bias: a learned table [num_buckets, num_heads] gathered by the bucketed key-query distance
/// and added to the attention scores (no positional embedding elsewhere). T5 computes it in the first layer and every layer
/// reuses it, so the same <see cref="Table"/> appears in each block.</summary>
public sealed record RelativePositionBiasRole(Value Table, Node Gather, Value Bias, long Buckets, long Heads);

using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Mitigation.SinkBias;

/// <summary>One layer's captured prefix keys and values, in the model's dtype and in the layout of the site they were read
/// at (cache form: [1, kv_heads, P, head_size] each; inline form: K^T [1, heads, head_size, P] and V [1, heads, P, head_size]).</summary>
public sealed record CapturedLayer(int Block, ArrayTensor Key, ArrayTensor Value);

/// <summary>What <see cref="SinkCapture"/> read from the original model: the plan it was read for, the prefix and every
/// attention layer's keys and values of the prefix positions.</summary>
public sealed record CapturedSink(SinkPlan Plan, SinkPrefix Prefix, IReadOnlyList<CapturedLayer> Layers)
{
    public int Length => Prefix.Length;
}

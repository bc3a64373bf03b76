using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>A fused mixture-of-experts op: which inputs hold the stacked expert weights (fc1 = gate or fused gate/up or up,
/// fc2 = down, fc3 = up when gate and up are separate), their scales (quantized ops) and biases; input 1 is always the
/// router output.</summary>
public sealed record FusedMoeOp(string Op, string Domain, int Fc1, int? Fc1Scales, int? Fc1Bias, int Fc2, int? Fc2Scales, int? Fc2Bias,
    int Fc3, int? Fc3Scales, int? Fc3Bias, bool Quantized)
{
    public string Name => $"{Domain}::{Op}";
}

/// <summary>Mixture-of-experts forms. The fused ops of ONNX Runtime (com.microsoft MoE, QMoE) carry every expert in a
/// few stacked tensors; the decomposed form (torch.onnx / dynamo exports of Mixtral-, Qwen-MoE-, DeepSeek-style
/// blocks) is a router linear, Softmax or Sigmoid, TopK, and one FFN per expert whose output is multiplied by a
/// routing weight derived from the TopK and summed (Add chains, or ScatterND/ScatterElements back into place).</summary>
public static class MoeRules
{
    private const string Ms = "com.microsoft";

    public static IReadOnlyList<FusedMoeOp> Fused { get; } =
    [
        // MoE(input, router_probs, fc1_experts_weights, fc1_experts_bias, fc2_experts_weights, fc2_experts_bias, fc3_experts_weights, fc3_experts_bias)
        new("MoE", Ms, Fc1: 2, Fc1Scales: null, Fc1Bias: 3, Fc2: 4, Fc2Scales: null, Fc2Bias: 5, Fc3: 6, Fc3Scales: null, Fc3Bias: 7, Quantized: false),
        // QMoE(input, router_probs, fc1_w, fc1_scales, fc1_bias, fc2_w, fc2_scales, fc2_bias, fc3_w, fc3_scales, fc3_bias, zero points..., router_weights)
        new("QMoE", Ms, Fc1: 2, Fc1Scales: 3, Fc1Bias: 4, Fc2: 5, Fc2Scales: 6, Fc2Bias: 7, Fc3: 8, Fc3Scales: 9, Fc3Bias: 10, Quantized: true),
    ];

    public static FusedMoeOp? FusedOp(Node node) => Fused.FirstOrDefault(o => node.Is(o.Op, o.Domain));

    /// <summary>Ops between router logits and the TopK / MoE router input (scores = softmax or sigmoid, plus a bias
    /// correction as in DeepSeek-V3 / GLM).</summary>
    public static IReadOnlySet<string> RouterPath { get; } = new HashSet<string> { "Softmax", "Sigmoid", "Add", "Cast", "CastLike", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Transpose" };

    /// <summary>Ops that carry routing weights from the TopK to the Mul that scales an expert's output.</summary>
    public static IReadOnlySet<string> RoutingPath { get; } = new HashSet<string>
    {
        "Softmax", "Sigmoid", "Div", "Mul", "ReduceSum", "Add", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Gather",
        "GatherElements", "GatherND", "Equal", "Where", "Slice", "Split", "ScatterElements", "OneHot", "Expand", "Identity", "Sum",
    };

    /// <summary>Ops that combine expert contributions into the MoE output.</summary>
    public static IReadOnlySet<string> CombinePath { get; } = new HashSet<string> { "Add", "Sum", "ScatterND", "ScatterElements", "Cast", "CastLike", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose" };
}

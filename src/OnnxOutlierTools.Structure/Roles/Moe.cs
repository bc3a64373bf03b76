using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Roles;

public enum MoeForm
{
    /// <summary>One com.microsoft MoE / QMoE node holding every expert's weights stacked.</summary>
    Fused,
    /// <summary>A router linear, TopK, and one FFN per expert whose outputs are weighted by the routing and summed.</summary>
    Decomposed,
}

/// <summary>The activation of a mixture of experts: the fused op's <c>activation_type</c> attribute as written (an open set:
/// "relu", "gelu", "silu", "swiglu", ...), or the FFN kind and activation of the decomposed form's experts.
/// <see cref="ToString"/> is the text the reports print.</summary>
public sealed record MoeActivation
{
    private MoeActivation(string? activationType, FfnKind? expertKind, FfnActivation? expertActivation) =>
        (ActivationType, ExpertKind, ExpertActivation) = (activationType, expertKind, expertActivation);

    /// <summary>The fused op's <c>activation_type</c>; null for the decomposed form.</summary>
    public string? ActivationType { get; }
    /// <summary>The decomposed form's experts' FFN kind and activation; null for the fused ops.</summary>
    public FfnKind? ExpertKind { get; }
    public FfnActivation? ExpertActivation { get; }

    public static MoeActivation OfOp(string activationType) => new(activationType, null, null);
    public static MoeActivation OfExperts(FfnKind kind, FfnActivation activation) => new(null, kind, activation);

    public override string ToString() =>
        ActivationType ?? (ExpertKind is { } k && ExpertActivation is { } a ? $"{k.Name()} {a.Name()}" : "");
}

/// <summary>One projection of all experts of a fused MoE, stacked in one initializer [experts, ...]:
/// <see cref="Layout"/> says whether each expert's matrix is [in, out] or [out, in]; quantized (QMoE) weights have
/// <see cref="Scales"/> and are packed (<see cref="Bits"/> per element).</summary>
public sealed record ExpertWeights
{
    public required Value Weight { get; init; }
    public Value? Scales { get; init; }
    public Value? Bias { get; init; }
    public required WeightLayout Layout { get; init; }
    public required long Experts { get; init; }
    public required long InFeatures { get; init; }
    public required long OutFeatures { get; init; }
    /// <summary>Bits per packed element of a quantized (QMoE) weight; null when not quantized.</summary>
    public int? Bits { get; init; }

    public bool Quantized => Bits is not null;
    public override string ToString() => $"{Weight.Name} [{Experts} x {InFeatures}->{OutFeatures}]{(Bits is int b ? $" int{b}" : "")}";
}

/// <summary>A mixture-of-experts FFN: the router (the linear producing the routing logits), top-k, the experts' gate/up/down
/// projections (stacked <see cref="ExpertWeights"/> for the fused ops, one <see cref="FfnRole"/> per expert when
/// decomposed), and a shared expert added to the routed output (GLM, DeepSeek, Qwen-MoE), with its sigmoid gate when it
/// has one.</summary>
public sealed record MoeRole
{
    public required MoeForm Form { get; init; }
    /// <summary>The fused op (com.microsoft MoE / QMoE, with where its expert weights are); null for the decomposed form.</summary>
    public FusedMoeOp? FusedOp { get; init; }
    /// <summary>The op's name as reports print it: "com.microsoft::QMoE", or "TopK" for the decomposed form.</summary>
    public string Op => FusedOp?.Name ?? Node.OpType;
    /// <summary>The MoE node, or the TopK node of the decomposed form.</summary>
    public required Node Node { get; init; }
    /// <summary>The tokens the experts read (the FFN norm output, up to layout ops).</summary>
    public required Value Input { get; init; }
    /// <summary>What the MoE sublayer adds to the residual stream (routed experts plus the shared expert).</summary>
    public required Value Output { get; init; }
    public LinearRole? Router { get; init; }
    public int? TopK { get; init; }
    public int? NumExperts { get; init; }
    public required MoeActivation Activation { get; init; }
    public ExpertWeights? Gate { get; init; }
    public ExpertWeights? Up { get; init; }
    public ExpertWeights? Down { get; init; }
    /// <summary>Gate and up are one fused projection (interleaved or concatenated); <see cref="Gate"/> is <see cref="Up"/>.</summary>
    public bool FusedGateUp { get; init; }
    /// <summary>The routed experts of the decomposed form, in expert order.</summary>
    public IReadOnlyList<FfnRole> Experts { get; init; } = [];
    public FfnRole? SharedExpert { get; init; }
    /// <summary>sigmoid(x W) scaling the shared expert's output (Qwen2-MoE), when present.</summary>
    public LinearRole? SharedExpertGate { get; init; }
}

using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>The attention variants of newer models (#7): QK-norm on the query/key paths, a gated output before
/// o_proj, sliding windows and soft-capping. Their rules run through the recognizer's matcher (when it has one),
/// so the tracer reports their near misses.</summary>
internal sealed partial class AttentionRecognizer
{
    private Dictionary<Value, NormRole>? _normByOutput;
    private IReadOnlyList<Rule<QkNormRole>>? _qkNormRules;
    private IReadOnlyList<Rule<OutputGateMatch>>? _gateRules;
    private readonly HashSet<Value> _coreOutputs = [];
    private Dictionary<Value, LinearRole>? _quantizedByInput;

    private Dictionary<Value, NormRole> NormByOutput =>
        _normByOutput ??= (norms ?? []).GroupBy(n => n.Output).ToDictionary(g => g.Key, g => g.First());

    private IReadOnlyList<Rule<QkNormRole>> QkNormRuleSet => _qkNormRules ??= QkNormRules.Create(v => NormByOutput.GetValueOrDefault(v), ExactLinear);

    private IReadOnlyList<Rule<OutputGateMatch>> GateRuleSet =>
        _gateRules ??= GatedAttentionRules.Create(v => _coreOutputs.Contains(GraphWalk.Upstream(v)), v => linears.ByOutput(v));

    /// <summary>The rules this recognizer runs through the matcher (for the tracer).</summary>
    public IEnumerable<IRule> Rules => matcher is null ? [] : QkNormRuleSet.Cast<IRule>().Concat(GateRuleSet).Concat(WindowMaskRules.All);

    /// <summary>The linear whose output is exactly <paramref name="value"/> (with or without its bias).</summary>
    private LinearRole? ExactLinear(Value value) =>
        linears.ByOutput(value) is { } l && (l.Output == value || l.Node.Output(0) == value) ? l : null;

    /// <summary>A QK-norm whose output is <paramref name="value"/>: a recognized norm that a QK-norm rule accepts.</summary>
    private QkNormRole? TryQkNorm(Value value)
    {
        if (matcher is null || !NormByOutput.ContainsKey(value)) return null;
        foreach (var rule in QkNormRuleSet)
            if (matcher.TryMatch(rule, value) is { } m) return rule.Build(m);
        return null;
    }

    /// <summary>The one QK-norm a query/key path passed through; a per-head norm whose size is not the head size is noted.</summary>
    private QkNormRole? QkNorm(PathTrace? path, Node at, string what, int? headSize)
    {
        if (path is null || path.QkNorms.Count == 0) return null;
        if (path.QkNorms.Count > 1)
        {
            trace.Note("QkNorm", $"{at.Describe()}: the {what} path passes {path.QkNorms.Count} norms; none is taken as its QK-norm");
            return null;
        }
        var norm = path.QkNorms[0];
        if (norm.Scope == QkNormScope.PerHead && headSize is int hs && hs > 0 && norm.NormalizedSize != hs)
            trace.Note("QkNorm", $"{at.Describe()}: the {what} norm '{norm.Norm.OutputNode.Describe()}' normalizes {norm.NormalizedSize} channels, the head size is {hs}");
        return norm;
    }

    /// <summary>Gated output: Mul(attention output, Sigmoid(gate projection)) between the core and o_proj.</summary>
    private OutputGateRole? OutputGate(Value output, LinearRole? query)
    {
        if (matcher is null) return null;
        _coreOutputs.Add(output);
        foreach (var (node, _, _) in GraphWalk.Consumers(output))
        {
            if (!node.Is("Mul") || node.Output(0) is not { } product) continue;
            foreach (var rule in GateRuleSet)
                if (matcher.TryMatch(rule, product) is { } m)
                {
                    var g = rule.Build(m);
                    var source = g.FromPart && g.Linear == query ? GateSource.PackedWithQuery : GateSource.SeparateLinear;
                    return new OutputGateRole(g.Linear, source, GateActivation.Sigmoid, g.GateInput, g.Sigmoid, g.Multiply, g.Output);
                }
        }
        return null;
    }

    /// <summary>A linear whose first node is not the one that reads the value (DynamicQuantizeLinear in front of
    /// MatMulInteger or MatMulIntegerToFloat) and reads the value.</summary>
    private LinearRole? QuantizedReader(Value output)
    {
        _quantizedByInput ??= linears.All.Where(l => l.Form is LinearForm.MatMulInteger or LinearForm.MatMulIntegerToFloat)
            .GroupBy(l => GraphWalk.Upstream(l.Input)).ToDictionary(g => g.Key, g => g.First());
        return _quantizedByInput.GetValueOrDefault(GraphWalk.Upstream(output));
    }

    /// <summary>GroupQueryAttention's local_window_size (-1 = global) and softcap attributes.</summary>
    private static AttentionRole? WithGqaAttributes(Node node, AttentionRole? role)
    {
        if (role is null) return null;
        long window = node.GetInt("local_window_size", -1);
        return role with
        {
            Window = node.GetAttribute("local_window_size") is null ? AttentionWindow.Global
                : window > 0 ? new AttentionWindow(AttentionWindowKind.Sliding, window, AttentionWindowSource.LocalWindowSizeAttribute)
                : new AttentionWindow(AttentionWindowKind.Global, null, AttentionWindowSource.LocalWindowSizeAttribute),
            Softcap = Softcap(node),
        };
    }

    private static AttentionRole? WithSoftcapAttribute(Node node, AttentionRole? role) => role is null ? null : role with { Softcap = Softcap(node) };

    /// <summary>The <c>softcap</c> attribute of GroupQueryAttention / ai.onnx Attention; null when 0 (off).</summary>
    private static double? Softcap(Node node) => node.GetFloat("softcap", 0f) is float c && c > 0 ? c : null;

    /// <summary>A decomposed attention's soft-cap (cap * tanh(scores / cap) before the softmax), its window (from the
    /// mask), and its head count when q_proj also emits the gate (then twice as wide as the heads it feeds).</summary>
    private AttentionRole? WithDecomposedFacts(AttentionRole? role, List<Node> path, Value? mask)
    {
        if (role is null) return null;
        if (role.OutputGate?.Source == GateSource.PackedWithQuery && role.NumHeads is int h && h % 2 == 0) role = role with { NumHeads = h / 2 };
        var window = matcher is null ? null : WindowMaskRules.Find(matcher, mask);
        return role with
        {
            Softcap = DecomposedSoftcap(path),
            Window = window is long w ? new AttentionWindow(AttentionWindowKind.Sliding, w, AttentionWindowSource.WindowMask) : AttentionWindow.Global,
        };
    }

    private static double? DecomposedSoftcap(List<Node> path)
    {
        var tanh = path.FirstOrDefault(n => n.Is("Tanh"));
        if (tanh?.Output(0) is not { } t) return null;
        foreach (var use in t.Uses)
            if (use.Node is { } n && n.Is("Mul") && n.Inputs.FirstOrDefault(i => i is not null && i != t) is { } c && ConstantResolver.ScalarOf(c) is double cap && cap > 0)
                return cap;
        return null;
    }
}

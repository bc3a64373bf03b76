using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>What an FFN rule found at a down projection's input: the activation and which linear
/// outputs feed it (gate and up for GLU; fc1 for an MLP, bound as "up").</summary>
public sealed record FfnMatch(FfnKind Kind, FfnActivation Activation, Value? GateOutput, Value UpOutput, Value? ActivationBias, IReadOnlyList<Node> Nodes);

/// <summary>FFN activation rules, rooted at the down projection's input (y6 in a GLU, y4 in a GeLU MLP):
/// SiLU / GeLU (erf, tanh, fused) / ReLU, as GLU (act(gate) * up) or MLP (act(fc1)).</summary>
public static class FfnRules
{
    /// <summary>Builds the rule set; <paramref name="isLinearOutput"/> tells which values are outputs of
    /// recognized linear layers (the rules' leaves).</summary>
    public static IReadOnlyList<Rule<FfnMatch>> Create(Func<Value, bool> isLinearOutput)
    {
        Pattern Linear(string name) => P.Var(name, v => isLinearOutput(GraphWalk.Upstream(v)) || PackedPart(v) is { } p && isLinearOutput(p),
            "the output of a linear layer (or a Split/Slice of a packed one)");

        var rules = new List<Rule<FfnMatch>>();
        foreach (var (act, pattern) in Activations(Linear("gate")))
            rules.Add(new Rule<FfnMatch>($"GLU/{act.Name()}", P.Commuted("Mul", pattern, Linear("up")), null,
                m => new FfnMatch(FfnKind.Glu, act, m["gate"], m["up"], m.TryValue("actbias"), m.Nodes)));
        foreach (var (act, pattern) in Activations(Linear("up")))
            rules.Add(new Rule<FfnMatch>($"MLP/{act.Name()}", pattern, null,
                m => new FfnMatch(FfnKind.Mlp, act, null, m["up"], m.TryValue("actbias"), m.Nodes)));
        return rules;
    }

    /// <summary>For a Split/Slice output, the tensor it was cut from (a packed gate_up projection).</summary>
    public static Value? PackedPart(Value value)
    {
        var v = GraphWalk.Upstream(value);
        return v.Producer is { } p && (p.Is("Split") || p.Is("Slice")) && p.Input(0) is { } whole ? GraphWalk.Upstream(whole) : null;
    }

    /// <summary>Activation forms over an input pattern (the same variable must be read everywhere).</summary>
    private static IEnumerable<(FfnActivation Name, Pattern Pattern)> Activations(Pattern x)
    {
        // SiLU: x * sigmoid(x), either order; or a fused Swish-like op.
        yield return (FfnActivation.Silu, P.Commuted("Mul", x, P.Op("Sigmoid", x)));
        yield return (FfnActivation.QuickGelu, P.Node(["QuickGelu"], [x], "com.microsoft"));
        // ai.onnx Swish (opset 24) is x * sigmoid(alpha * x): SiLU when alpha is 1 (mobius exports).
        yield return (FfnActivation.Silu, P.Node(["Swish"], [x], check: n => Math.Abs(n.GetFloat("alpha", 1f) - 1f) < 1e-6f, checkText: "alpha = 1"));

        // GeLU, exact: 0.5 * x * (1 + erf(x / sqrt 2)), in the operand orders exporters produce.
        var erf = P.Op("Erf", P.AnyOf(P.Op("Div", x, P.AnyScalar()), P.Commuted("Mul", x, P.AnyScalar())));
        var onePlusErf = P.Commuted("Add", erf, P.Scalar(1));
        yield return (FfnActivation.GeluErf, P.AnyOf(
            P.Commuted("Mul", P.Commuted("Mul", x, onePlusErf), P.Scalar(0.5)),
            P.Commuted("Mul", P.Commuted("Mul", x, P.Scalar(0.5)), onePlusErf),
            P.Commuted("Mul", x, P.Commuted("Mul", onePlusErf, P.Scalar(0.5)))));

        // GeLU, tanh approximation: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
        var cube = P.AnyOf(P.Op("Pow", x, P.Scalar(3)), P.Commuted("Mul", x, P.Commuted("Mul", x, x)));
        var inner = P.Commuted("Add", x, P.Commuted("Mul", cube, P.AnyScalar()));
        var onePlusTanh = P.Commuted("Add", P.Op("Tanh", P.Commuted("Mul", inner, P.AnyScalar())), P.Scalar(1));
        yield return (FfnActivation.GeluTanh, P.AnyOf(
            P.Commuted("Mul", P.Commuted("Mul", x, P.Scalar(0.5)), onePlusTanh),
            P.Commuted("Mul", P.Commuted("Mul", x, onePlusTanh), P.Scalar(0.5)),
            P.Commuted("Mul", x, P.Commuted("Mul", onePlusTanh, P.Scalar(0.5)))));

        // Fused GeLU ops; FastGelu and BiasGelu may carry fc1's bias as their second input.
        yield return (FfnActivation.Gelu, P.Op("Gelu", x));
        yield return (FfnActivation.Gelu, P.Node(["Gelu"], [x], "com.microsoft"));
        yield return (FfnActivation.FastGelu, P.Node(["FastGelu"], [x, P.Const("actbias")], "com.microsoft"));
        yield return (FfnActivation.FastGelu, P.Node(["FastGelu"], [x], "com.microsoft"));
        yield return (FfnActivation.BiasGelu, P.Node(["BiasGelu"], [x, P.Const("actbias")], "com.microsoft"));
        yield return (FfnActivation.Relu, P.Op("Relu", x));
    }
}

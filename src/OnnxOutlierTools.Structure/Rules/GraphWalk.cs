using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>Moves along values through ops that only change layout or precision (Reshape, Transpose,
/// Cast, ...), so roles relate tensors the way the math does, not the way an exporter reshaped them.</summary>
public static class GraphWalk
{
    private static readonly HashSet<string> LayoutOps = ["Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"];

    /// <summary>The graph inputs a graph can read: its own, and for an If branch (which reads outer-scope values by name, as an
    /// Optimum merged decoder's branches read input_ids) those of the enclosing graphs. A BeamSearch decoder has its own.</summary>
    public static IEnumerable<Value> ScopeInputs(Graph graph) =>
        graph.ParentNode is { } owner && owner.Is("If") && owner.Graph is { } outer ? graph.Inputs.Concat(ScopeInputs(outer)) : graph.Inputs;

    public static bool IsLayoutOp(Node node) => node.IsDefaultDomain && LayoutOps.Contains(node.OpType);

    /// <summary>The value this one is a re-layout of (follows first inputs through layout ops).</summary>
    public static Value Upstream(Value value)
    {
        var v = value;
        for (int i = 0; i < 8 && v.Producer is { } p && IsLayoutOp(p) && p.Input(0) is { } input; i++) v = input;
        return v;
    }

    /// <summary>Consumers of a value, looking through layout ops: (consumer, the input value it reads).</summary>
    public static IEnumerable<(Node Node, int Index, Value Via)> Consumers(Value value, int depth = 6)
    {
        foreach (var use in value.Uses)
        {
            if (use.Node is not { } node) continue;
            if (IsLayoutOp(node) && depth > 0 && use.Index == 0 && node.Output(0) is { } next)
            {
                foreach (var c in Consumers(next, depth - 1)) yield return c;
            }
            else yield return (node, use.Index, value);
        }
    }

    /// <summary>True when two values are the same tensor up to layout ops.</summary>
    public static bool SameTensor(Value? a, Value? b) => a is not null && b is not null && ReferenceEquals(Upstream(a), Upstream(b));

    /// <summary>Graph outputs reachable from <paramref name="value"/> through layout ops, Concat and Unsqueeze.</summary>
    public static IEnumerable<Value> ReachableOutputs(Value value, int depth = 4)
    {
        if (value.IsGraphOutput) yield return value;
        if (depth == 0) yield break;
        foreach (var use in value.Uses)
        {
            if (use.Node is not { } node) continue;
            if (!(IsLayoutOp(node) || node.Is("Concat") || node.Is("TensorScatter") || node.Is("ScatterND"))) continue;
            foreach (var o in node.Outputs)
                if (o is not null)
                    foreach (var r in ReachableOutputs(o, depth - 1)) yield return r;
        }
    }
}

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

    // Ops a cache tensor passes on its way to a present output: re-layouts, the Concat with the past, the static-cache
    // scatter writes, and Slice/Expand (a sliding window's cut, a repeat-kv). None of them mixes in another layer's data.
    private static readonly HashSet<string> CacheOps = ["Concat", "TensorScatter", "ScatterND", "ScatterElements", "Slice", "Expand"];

    /// <summary>Graph outputs reachable from <paramref name="value"/> through layout ops and the ops a KV cache is written
    /// with (Concat, TensorScatter, ScatterND, ...), nearest first (breadth-first), at most <paramref name="depth"/> ops away.
    /// Exporters put a few re-layouts between the attention's keys and the present output (GLM's MLA export: Transpose,
    /// Reshape, Concat with the indexer key, Unsqueeze), so the bound is a safety net against walking a whole graph, not a
    /// pattern length.</summary>
    public static IEnumerable<Value> ReachableOutputs(Value value, int depth = 8)
    {
        var seen = new HashSet<Value> { value };
        var frontier = new List<Value> { value };
        for (int level = 0; frontier.Count > 0; level++)
        {
            foreach (var v in frontier) if (v.IsGraphOutput) yield return v;
            if (level == depth) yield break;
            var next = new List<Value>();
            foreach (var v in frontier)
                foreach (var use in v.Uses)
                {
                    if (use.Node is not { } node || !(IsLayoutOp(node) || node.IsDefaultDomain && CacheOps.Contains(node.OpType))) continue;
                    foreach (var o in node.Outputs)
                        if (o is not null && seen.Add(o)) next.Add(o);
                }
            frontier = next;
        }
    }
}

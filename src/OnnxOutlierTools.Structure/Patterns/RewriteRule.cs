using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>Builds replacement nodes for one match. Nodes it adds are inserted before the matched root's
/// producer and carry the rule name as provenance in their doc string.</summary>
public sealed class RewriteContext(Graph graph, NameAuthority names, Node anchor, string ruleName)
{
    public Graph Graph { get; } = graph;
    public NameAuthority Names { get; } = names;

    /// <summary>Adds a node computing <paramref name="opType"/> over <paramref name="inputs"/>; returns its first output.</summary>
    public Value Add(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, string domain = "", string? hint = null)
    {
        string name = Names.NewNodeName($"{ruleName}/{opType}");
        var node = new Node(domain, opType, inputs, [Names.NewValueName(hint ?? name + "_output")], attributes, name)
        {
            DocString = $"onnx-outliers: inserted by rule {ruleName}",
        };
        Graph.InsertBefore(anchor, node);
        return node.Outputs[0]!;
    }

    public Value Initializer(string hint, Tensors.Tensor tensor) => Graph.AddInitializer(Names.NewValueName(hint), tensor);
}

/// <summary>A rewrite rule: pattern, check and replacement declared together.</summary>
public sealed class RewriteRule(string name, Pattern pattern, Func<Match, Check>? check, Func<Match, RewriteContext, Value> rewrite) : IRule
{
    public string Name { get; } = name;
    public Pattern Pattern { get; } = pattern;
    public bool AllowEscapes => false;
    public Check Verify(Match match) => check?.Invoke(match) ?? Check.Pass;
    internal Value Rewrite(Match match, RewriteContext context) => rewrite(match, context);
}

/// <summary>What a rewrite pass did: matches rewritten per rule, nodes removed by cleanup, near misses.</summary>
public sealed record RewriteReport(IReadOnlyDictionary<string, int> RewritesPerRule, int NodesRemoved,
    IReadOnlyDictionary<string, MatchFailure> NearMisses)
{
    public bool Changed => RewritesPerRule.Values.Any(c => c > 0);
}

/// <summary>Applies rewrite rules to a graph: each match's root is replaced by the rule's new value; the
/// old nodes become dead and are removed in one cleanup at the end (dead nodes, then a stable sort).</summary>
public static class RewriteEngine
{
    public static RewriteReport Apply(Graph graph, NameAuthority names, params RewriteRule[] rules)
    {
        var counts = rules.ToDictionary(r => r.Name, _ => 0);
        var matcher = new Matcher(graph);
        var consumed = new HashSet<Node>();
        foreach (var rule in rules)
        {
            foreach (var match in matcher.MatchAll(rule).ToList())
            {
                // A node already rewritten by an earlier match is not matched again in this pass.
                if (match.Nodes.Any(consumed.Contains) || match.Root.Producer?.Graph != graph) continue;
                var context = new RewriteContext(graph, names, match.Root.Producer!, rule.Name);
                var replacement = rule.Rewrite(match, context);
                if (match.Root.Type is not null && replacement.Type is null) replacement.Type = match.Root.Type;
                if (match.Root.IsGraphOutput)
                {
                    // Graph outputs keep their names: the replacement takes the old name over.
                    string outputName = match.Root.Name;
                    match.Root.Name = names.NewValueName(outputName + "_replaced");
                    replacement.Name = outputName;
                }
                match.Root.ReplaceAllUsesWith(replacement);
                foreach (var n in match.Nodes) consumed.Add(n);
                counts[rule.Name]++;
            }
        }
        int removed = graph.RemoveDeadNodes();
        graph.TopologicalSort();
        return new RewriteReport(counts, removed, matcher.NearMisses);
    }
}

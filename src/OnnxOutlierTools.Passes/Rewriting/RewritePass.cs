using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;

namespace OnnxOutlierTools.Passes.Rewriting;

/// <summary>Applies rewrite rules, in the order given, in every graph: each match's root is replaced by
/// the rule's new value (a graph output keeps its name) and the matched nodes are left dead for the
/// sequence's cleanup. Run it inside a <see cref="PassSequence"/> (or <see cref="Sequence"/>), which
/// removes them. Counts are per rule; skipped sites are matches overlapping an earlier rewrite and each
/// rule's best near miss in each graph.</summary>
public sealed class RewritePass : GraphPass
{
    public RewritePass(string name, params RewriteRule[] rules) : base(name, rules: Names(rules))
    {
        RewriteRules = rules.ToArray();
    }

    public IReadOnlyList<RewriteRule> RewriteRules { get; }

    /// <summary>This pass followed by the default cleanup, as a sequence named like the pass.</summary>
    public PassSequence Sequence() => new(Name, this);

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        var matcher = new Matcher(graph);
        var consumed = new HashSet<Node>();
        foreach (var rule in RewriteRules)
        {
            foreach (var match in matcher.MatchAll(rule).ToList())
            {
                if (match.Root.Producer?.Graph != graph) continue;
                // A node already rewritten by an earlier match is not matched again in this pass.
                if (match.Nodes.FirstOrDefault(consumed.Contains) is { } taken)
                {
                    recorder.Skip(rule.Name, $"overlaps {taken.Describe()}, already rewritten in this pass", graph, match.Root.Name);
                    continue;
                }
                var replacement = rule.Rewrite(match, new RewriteContext(graph, context.Names, match.Root.Producer!, Name, rule.Name));
                if (match.Root.Type is not null && replacement.Type is null) replacement.Type = match.Root.Type;
                if (match.Root.IsGraphOutput)
                {
                    // Graph outputs keep their names: the replacement takes the old name over.
                    string outputName = match.Root.Name;
                    match.Root.Name = context.Names.NewValueName(outputName + "_replaced");
                    replacement.Name = outputName;
                }
                match.Root.ReplaceAllUsesWith(replacement);
                foreach (var n in match.Nodes) consumed.Add(n);
                recorder.Count(rule.Name);
            }
        }
        foreach (var rule in RewriteRules)
            if (matcher.NearMisses.TryGetValue(rule.Name, out var miss))
                recorder.Skip(rule.Name, $"best near miss after {miss.Progress} matched node(s): {miss.Reason}", graph, miss.At?.Name ?? miss.Root.Name);
    }

    private static string[] Names(RewriteRule[] rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        if (rules.Length == 0) throw new ArgumentException("a rewrite pass needs at least one rule", nameof(rules));
        if (rules.Any(r => r is null)) throw new ArgumentException("a rewrite pass holds a null rule", nameof(rules));
        return rules.Select(r => r.Name).ToArray();
    }
}

using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes.Rewriting;

/// <summary>A rewrite rule: pattern, check and replacement declared together. The pattern and its
/// matcher are the Structure layer's (recognition rules share them); applying the replacement is a pass's
/// job (<see cref="RewritePass"/>). Variants are separate instances built by a factory method.</summary>
public sealed class RewriteRule : IRule
{
    private readonly Func<Match, Check>? _check;
    private readonly Func<Match, RewriteContext, Value> _rewrite;

    public RewriteRule(string name, Pattern pattern, Func<Match, Check>? check, Func<Match, RewriteContext, Value> rewrite)
    {
        PassNames.Check(name, nameof(name));
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(rewrite);
        Name = name;
        Pattern = pattern;
        _check = check;
        _rewrite = rewrite;
    }

    public string Name { get; }
    public Pattern Pattern { get; }

    /// <summary>Always false: a match whose inner values are used outside it is refused, since removing
    /// the matched nodes would leave those uses dangling.</summary>
    public bool AllowEscapes => false;

    public Check Verify(Match match) => _check?.Invoke(match) ?? Check.Pass;
    internal Value Rewrite(Match match, RewriteContext context) => _rewrite(match, context);
    public override string ToString() => Name;
}

/// <summary>Builds the replacement for one match. Nodes it adds go before the matched root's producer,
/// named "{rule}/{OpType}" by the model's name authority, and carry their provenance
/// (<see cref="NodeOrigin"/>: this pass and rule) in their metadata.</summary>
public sealed class RewriteContext
{
    internal RewriteContext(Graph graph, NameAuthority names, Node anchor, string passName, string ruleName)
    {
        Editor = new GraphEditor(graph, names) { Before = anchor, Origin = new NodeOrigin(passName, ruleName) };
        RuleName = ruleName;
    }

    /// <summary>The editor new nodes go through (for multi-output nodes and other domains).</summary>
    public GraphEditor Editor { get; }
    public Graph Graph => Editor.Graph;
    public NameAuthority Names => Editor.Names;
    public string RuleName { get; }

    /// <summary>Adds a node computing <paramref name="opType"/> over <paramref name="inputs"/>; returns its first output.</summary>
    public Value Add(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, string domain = "", string? hint = null) =>
        Editor.AddNode(opType, inputs, attributes, domain, $"{RuleName}/{opType}", hint is null ? null : [hint]).Outputs[0]!;

    public Value Initializer(string hint, Tensor tensor) => Editor.Initializer(hint, tensor);
}

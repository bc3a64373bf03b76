using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>A pattern over values, matched from an output backwards through producers.
/// Build patterns with <see cref="P"/>; match them with <see cref="Matcher"/>.</summary>
public abstract class Pattern
{
    /// <summary>Tries to match <paramref name="value"/>; on failure the state records why.
    /// Implementations must leave the state as they found it when they return false.</summary>
    internal abstract bool Match(Value? value, MatchState state);

    /// <summary>Op types this pattern can be rooted at (null = any), for indexing candidate roots.</summary>
    internal virtual IReadOnlyCollection<string>? RootOps => null;

    public abstract string Describe();
    public override string ToString() => Describe();
}

/// <summary>Any value, bound by name. A second occurrence of the same name must be the same value.</summary>
internal sealed class VarPattern(string name, Func<Value, bool>? predicate = null, string? predicateText = null) : Pattern
{
    internal override bool Match(Value? value, MatchState state)
    {
        if (value is null) return state.Fail($"'{name}' is missing (an omitted input)", null);
        if (predicate is not null && !predicate(value)) return state.Fail($"'{name}' = '{value.Name}' fails: {predicateText}", value);
        return state.Bind(name, value);
    }

    public override string Describe() => name;
}

/// <summary>A constant: an initializer, a Constant node's output, optionally behind Cast nodes;
/// bound by name to the constant value (the initializer / Constant output itself).</summary>
internal sealed class ConstPattern(string? name, Func<Tensor, bool>? predicate, string? predicateText) : Pattern
{
    internal override bool Match(Value? value, MatchState state)
    {
        if (value is null) return state.Fail("constant input is missing", null);
        var source = ConstantResolver.Resolve(value);
        if (source is null) return state.Fail($"'{value.Name}' is not a constant{(name is null ? "" : $" (for '{name}')")}", value);
        if (predicate is not null)
        {
            bool ok;
            try { ok = predicate(source.Tensor); } catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException) { ok = false; }
            if (!ok) return state.Fail($"constant '{value.Name}' is not {predicateText}", value);
        }
        if (name is null) return true;
        // Bind the defining value (the initializer), so roles name the tensor to edit, not a Cast of it.
        return state.Bind(name, source.Value);
    }

    public override string Describe() => name ?? (predicateText ?? "const");
}

/// <summary>One node with the given op type(s), its inputs matched by sub-patterns.</summary>
internal sealed class OpPattern : Pattern
{
    private readonly string[] _opTypes;
    private readonly string _domain;
    private readonly Pattern?[] _inputs;
    private readonly bool _commutative;
    private readonly string? _nodeName;
    private readonly int _outputIndex;
    private readonly Func<Node, bool>? _check;
    private readonly string? _checkText;

    public OpPattern(string[] opTypes, string domain, Pattern?[] inputs, bool commutative, string? nodeName, int outputIndex,
        Func<Node, bool>? check, string? checkText)
    {
        _opTypes = opTypes;
        _domain = domain;
        _inputs = inputs;
        _commutative = commutative && inputs.Length == 2;
        _nodeName = nodeName;
        _outputIndex = outputIndex;
        _check = check;
        _checkText = checkText;
    }

    internal override IReadOnlyCollection<string> RootOps => _opTypes;

    internal override bool Match(Value? value, MatchState state)
    {
        if (value is null) return state.Fail($"expected {OpText} but the input is missing", null);
        var node = value.Producer;
        if (node is null) return state.Fail($"expected {OpText} producing '{value.Name}', found {(value.IsGraphInput ? "a graph input" : value.IsInitializer ? "an initializer" : "no producer")}", value);
        if (!_opTypes.Any(op => node.Is(op, _domain))) return state.Fail($"expected {OpText}, found {node.Describe()}", value);
        if (value.OutputIndex != _outputIndex) return state.Fail($"expected output {_outputIndex} of {node.Describe()}, got output {value.OutputIndex}", value);
        if (_check is not null && !_check(node)) return state.Fail($"{node.Describe()} fails: {_checkText}", value);
        if (node.Inputs.Count < _inputs.Count(i => i is not null))
            return state.Fail($"{node.Describe()} has {node.Inputs.Count} inputs, expected {_inputs.Length}", value);

        var mark = state.Mark();
        state.EnterNode(node);
        if (_nodeName is not null && !state.BindNode(_nodeName, node)) { state.Restore(mark); return false; }
        if (MatchInputs(node, swapped: false, state)) return true;
        state.Restore(mark);
        if (_commutative)
        {
            state.EnterNode(node);
            if (_nodeName is not null && !state.BindNode(_nodeName, node)) { state.Restore(mark); return false; }
            if (MatchInputs(node, swapped: true, state)) return true;
            state.Restore(mark);
        }
        return false;
    }

    private bool MatchInputs(Node node, bool swapped, MatchState state)
    {
        for (int i = 0; i < _inputs.Length; i++)
        {
            var p = _inputs[i];
            if (p is null) continue;
            int index = swapped ? 1 - i : i;
            if (!p.Match(node.Input(index), state)) return false;
        }
        return true;
    }

    private string OpText => _opTypes.Length == 1 ? Qualified(_opTypes[0]) : "one of " + string.Join("/", _opTypes.Select(Qualified));
    private string Qualified(string op) => _domain is "" or "ai.onnx" ? op : $"{_domain}::{op}";

    public override string Describe() => $"{OpText}({string.Join(", ", _inputs.Select(i => i?.Describe() ?? "_"))})";
}

/// <summary>The first alternative that matches (variants: Div vs Reciprocal+Mul, Sqrt forms, ...).</summary>
internal sealed class AnyOfPattern(Pattern[] alternatives) : Pattern
{
    internal override IReadOnlyCollection<string>? RootOps =>
        alternatives.Any(a => a.RootOps is null) ? null : alternatives.SelectMany(a => a.RootOps!).Distinct().ToArray();

    internal override bool Match(Value? value, MatchState state)
    {
        foreach (var alternative in alternatives)
        {
            var mark = state.Mark();
            if (alternative.Match(value, state)) return true;
            state.Restore(mark);
        }
        return false;
    }

    public override string Describe() => "(" + string.Join(" | ", alternatives.Select(a => a.Describe())) + ")";
}

/// <summary>The inner pattern, directly or through pass-through nodes (Cast, Identity, ...).</summary>
internal sealed class ThroughPattern(string[] opTypes, Pattern inner) : Pattern
{
    internal override IReadOnlyCollection<string>? RootOps => inner.RootOps is null ? null : inner.RootOps.Concat(opTypes).Distinct().ToArray();

    internal override bool Match(Value? value, MatchState state)
    {
        var mark = state.Mark();
        if (inner.Match(value, state)) return true;
        state.Restore(mark);
        if (value?.Producer is { } node && opTypes.Any(op => node.Is(op)) && value.OutputIndex == 0)
        {
            state.EnterNode(node);
            if (Match(node.Input(0), state)) return true;
            state.Restore(mark);
        }
        return false;
    }

    public override string Describe() => $"[{string.Join("/", opTypes)}]?{inner.Describe()}";
}

/// <summary>Matches <paramref name="inner"/> once and binds the value; later occurrences of the same
/// name only check that it is the same value (a shared subexpression, like x - mean in LayerNorm).</summary>
internal sealed class BindPattern(string name, Pattern inner) : Pattern
{
    internal override IReadOnlyCollection<string>? RootOps => inner.RootOps;

    internal override bool Match(Value? value, MatchState state)
    {
        if (value is null) return state.Fail($"'{name}' is missing", null);
        if (state.IsBound(name)) return state.Bind(name, value);
        var mark = state.Mark();
        if (inner.Match(value, state) && state.Bind(name, value)) return true;
        state.Restore(mark);
        return false;
    }

    public override string Describe() => $"{name}={inner.Describe()}";
}

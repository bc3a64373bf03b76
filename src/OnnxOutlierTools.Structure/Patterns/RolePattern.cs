using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>A value that an earlier recognition step already identified as the output of a role (a norm found
/// by the norm rules, in any of its forms), continuing into the role's input with <paramref name="input"/>.
/// Lets a rule say "a norm of a Reshape of x" without restating every norm form. The value is bound to
/// <paramref name="name"/>; the role's nodes join the match.</summary>
internal sealed class RolePattern<T>(string name, Func<Value, T?> lookup, Func<T, Value?> inputOf, Func<T, IEnumerable<Node>> nodesOf,
    Pattern input, string what) : Pattern where T : class
{
    internal override bool Match(Value? value, MatchState state)
    {
        if (value is null) return state.Fail($"expected {what} but the input is missing", null);
        if (lookup(value) is not { } role) return state.Fail($"'{value.Name}' is not {what}", value);
        var mark = state.Mark();
        foreach (var node in nodesOf(role)) state.EnterNode(node);
        if (state.Bind(name, value) && input.Match(inputOf(role), state)) return true;
        state.Restore(mark);
        return false;
    }

    public override string Describe() => $"{what}({input.Describe()})";
}

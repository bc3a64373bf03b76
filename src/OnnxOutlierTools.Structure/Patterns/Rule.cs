using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>The outcome of a rule's check: success, or a reason (a failed check is data, not an exception).</summary>
public readonly record struct Check(bool Ok, string? Reason = null, Value? At = null)
{
    public static readonly Check Pass = new(true);
    public static Check Fail(string reason, Value? at = null) => new(false, reason, at);
    public static Check Require(bool condition, string reason, Value? at = null) => condition ? Pass : Fail(reason, at);
}

/// <summary>Common shape of rules, so the tracer can run recognition and rewrite rules alike.</summary>
public interface IRule
{
    string Name { get; }
    Pattern Pattern { get; }
    /// <summary>When false (the default), a match is refused if a value inside it (not its root) is used outside it.</summary>
    bool AllowEscapes { get; }
    Check Verify(Match match);
}

/// <summary>A recognition rule: pattern, check and result declared together. Variants are separate
/// instances built by a factory method (e.g. one per activation form).</summary>
public sealed class Rule<T>(string name, Pattern pattern, Func<Match, Check>? check, Func<Match, T> build, bool allowEscapes = false) : IRule
{
    public string Name { get; } = name;
    public Pattern Pattern { get; } = pattern;
    public bool AllowEscapes { get; } = allowEscapes;
    public Check Verify(Match match) => check?.Invoke(match) ?? Check.Pass;
    public T Build(Match match) => build(match);
    public override string ToString() => Name;
}

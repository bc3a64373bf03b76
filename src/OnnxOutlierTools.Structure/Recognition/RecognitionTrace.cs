using OnnxOutlierTools.Structure.Patterns;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>One rule's record in a recognition run: how often it matched and its best near miss.</summary>
public sealed record RuleTrace(string Category, string Rule, int Matches, MatchFailure? NearMiss, IReadOnlyList<string> Notes);

/// <summary>The tracer's output: per rule, matches and the best near miss; plus notes from the procedural
/// steps (attention tracing, block assembly) that say why a candidate was dropped.</summary>
public sealed class RecognitionTrace
{
    private readonly Dictionary<string, (string Category, int Matches)> _counts = [];
    private readonly Dictionary<string, List<string>> _notes = [];
    private readonly Dictionary<string, MatchFailure> _nearMisses = [];

    internal void Count(string rule, bool matched, string category = "attention")
    {
        var (cat, n) = _counts.GetValueOrDefault(rule, (category, 0));
        _counts[rule] = (cat, n + (matched ? 1 : 0));
    }

    internal void Note(string rule, string note)
    {
        if (!_notes.TryGetValue(rule, out var list)) _notes[rule] = list = [];
        if (list.Count < 20 && !list.Contains(note)) list.Add(note);
    }

    internal void Absorb(string category, Matcher matcher, IEnumerable<IRule> rules)
    {
        foreach (var rule in rules)
        {
            int matches = matcher.MatchCounts.GetValueOrDefault(rule.Name);
            var (_, previous) = _counts.GetValueOrDefault(rule.Name, (category, 0));
            _counts[rule.Name] = (category, Math.Max(previous, matches));
            if (matcher.NearMisses.TryGetValue(rule.Name, out var miss)
                && (!_nearMisses.TryGetValue(rule.Name, out var best) || miss.Progress > best.Progress))
                _nearMisses[rule.Name] = miss;
        }
    }

    public IReadOnlyList<RuleTrace> Rules =>
        _counts.Keys.Concat(_notes.Keys).Distinct()
            .Select(r => new RuleTrace(_counts.GetValueOrDefault(r, ("notes", 0)).Item1, r, _counts.GetValueOrDefault(r).Item2,
                _nearMisses.GetValueOrDefault(r), _notes.GetValueOrDefault(r) ?? []))
            .OrderBy(t => t.Category).ThenBy(t => t.Rule).ToList();

    public IReadOnlyList<string> NotesFor(string rule) => _notes.GetValueOrDefault(rule) ?? [];
}

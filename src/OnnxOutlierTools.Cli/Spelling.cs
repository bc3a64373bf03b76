namespace OnnxOutlierTools.Cli;

/// <summary>Finds what a mistyped command or option name was probably meant to be.</summary>
public static class Spelling
{
    /// <summary>The candidates closest to <paramref name="typed"/> (several on a tie), or none when no
    /// candidate is close: at most one edit for short names, two from five characters on, or
    /// <paramref name="typed"/> being the start of exactly one candidate (<c>--ext</c>).</summary>
    public static IReadOnlyList<string> Closest(string typed, IEnumerable<string> candidates)
    {
        ArgumentNullException.ThrowIfNull(typed);
        var names = candidates.Distinct(StringComparer.Ordinal).ToList();
        string bare = typed.TrimStart('-');
        int allowed = bare.Length >= 5 ? 2 : 1;
        var scored = names.Select(n => (Name: n, Distance: Distance(typed, n))).Where(s => s.Distance <= allowed).ToList();
        if (scored.Count > 0)
        {
            int best = scored.Min(s => s.Distance);
            return scored.Where(s => s.Distance == best).Select(s => s.Name).ToList();
        }
        var prefixed = names.Where(n => bare.Length >= 3 && n.StartsWith(typed, StringComparison.Ordinal)).ToList();
        return prefixed.Count == 1 ? prefixed : [];
    }

    /// <summary>"; did you mean 'a'?" (or "'a' or 'b'"), or "" when nothing is close.</summary>
    public static string Hint(string typed, IEnumerable<string> candidates)
    {
        var closest = Closest(typed, candidates);
        return closest.Count == 0 ? "" : "; did you mean " + string.Join(" or ", closest.Select(c => $"'{c}'")) + "?";
    }

    /// <summary>Edit distance counting an exchange of two neighbouring characters as one edit (the
    /// commonest typo), case-insensitive.</summary>
    public static int Distance(string a, string b)
    {
        a = a.ToLowerInvariant();
        b = b.ToLowerInvariant();
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }
}

using System.CommandLine;
using System.CommandLine.Parsing;

namespace OnnxOutlierTools.Cli;

/// <summary>The lines a parse failure is reported with: each error on one line, multi-line parser
/// messages joined (never shown as literal <c>\n\t</c>), and a suggestion for a mistyped command or option.</summary>
public static class UsageErrors
{
    public static IReadOnlyList<string> Lines(ParseResult parseResult)
    {
        ArgumentNullException.ThrowIfNull(parseResult);
        var command = parseResult.CommandResult.Command;
        var unmatched = parseResult.UnmatchedTokens;
        // An unknown word where a command belongs: the errors after it (its arguments, the missing
        // command) are consequences, so it gets one line of its own.
        if (command is RootCommand && unmatched.Count > 0 && !unmatched[0].StartsWith('-'))
        {
            var names = command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
            string hint = Spelling.Hint(unmatched[0], names);
            return [$"'{unmatched[0]}' is not an onnx-outliers command" +
                (hint.Length > 0 ? hint : $" (commands: {string.Join(", ", names)})")];
        }
        var lines = new List<string>();
        foreach (var error in parseResult.Errors)
        {
            string line = Flatten(error.Message);
            string? token = unmatched.FirstOrDefault(t => t.StartsWith('-') && error.Message.Contains($"'{t}'", StringComparison.Ordinal));
            string hint = token is null ? "" : Spelling.Hint(token, OptionNames(command));
            if (hint.Length > 0) line = line.TrimEnd('.') + hint;
            lines.Add(line);
        }
        return lines;
    }

    /// <summary>A parser message on one line: "Must be one of:\n\t'a'\n\t'b'" becomes
    /// "Must be one of: 'a', 'b'"; other line breaks become spaces. Control characters left after
    /// that are escaped (tokens the user typed are quoted in these messages).</summary>
    public static string Flatten(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var parts = message.Split('\n').Select(p => p.Trim()).Where(p => p.Length > 0).ToList();
        if (parts.Count == 0) return "";
        var sb = new System.Text.StringBuilder(parts[0]);
        for (int i = 1; i < parts.Count; i++)
            sb.Append(parts[i - 1].EndsWith(':') ? " " : i > 1 && parts[i - 1].StartsWith('\'') ? ", " : " ").Append(parts[i]);
        return Text.Printable.Escape(sb.ToString());
    }

    /// <summary>The names and aliases of the options a command accepts (its own and recursive ones of
    /// its parents), hidden ones left out.</summary>
    private static IEnumerable<string> OptionNames(Command command)
    {
        var options = command.Options.AsEnumerable();
        foreach (var parent in Ancestors(command)) options = options.Concat(parent.Options.Where(o => o.Recursive));
        return options.Where(o => !o.Hidden).SelectMany(o => o.Aliases.Prepend(o.Name));
    }

    private static IEnumerable<Command> Ancestors(Command command)
    {
        for (var parent = command.Parents.OfType<Command>().FirstOrDefault(); parent is not null; parent = parent.Parents.OfType<Command>().FirstOrDefault())
            yield return parent;
    }
}

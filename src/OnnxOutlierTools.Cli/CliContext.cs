using System.CommandLine;

namespace OnnxOutlierTools.Cli;

/// <summary>What every command needs: the output streams and the global options.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Error { get; } = stderr;

    /// <summary>Global (recursive) option: show stack traces with errors.</summary>
    public Option<bool> Verbose { get; } = new("--verbose")
    {
        Description = "Show stack traces with error messages.",
        Recursive = true,
    };

    /// <summary>Runs a command body through the shared error handler.</summary>
    public int Guard(ParseResult parseResult, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception ex)
        {
            return ErrorHandler.Report(ex, parseResult.GetValue(Verbose), Error);
        }
    }
}

using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Cli;

/// <summary>The output folder of a command that writes a model folder (mitigate, quantize): checked before any work, staged
/// beside it, moved into place at the end. --force replaces only a folder the same command wrote (it holds its report).</summary>
public static class OutputFolder
{
    /// <param name="command">The command's name, for messages.</param>
    /// <param name="reportFile">The report the command writes into every folder it makes (its mark).</param>
    public static void Check(string output, bool force, string command, string reportFile)
    {
        if (File.Exists(output)) throw new UsageException($"{output}: is a file; {command} -o names the folder to write the model into");
        if (!Directory.Exists(output) || !Directory.EnumerateFileSystemEntries(output).Any()) return;
        if (!force) throw new OutputExistsException(output, "exists");
        // Never a folder of other files, such as the input's.
        if (!File.Exists(Path.Combine(output, reportFile)))
            throw new UsageException($"{output}: exists and was not written by {command} (no {reportFile}); choose another folder");
    }

    /// <summary>Moves the finished folder to <paramref name="output"/> (an existing one, checked by <see cref="Check"/>, is replaced).</summary>
    public static void Commit(string finished, string output, bool force)
    {
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
        {
            if (!force) throw new OutputExistsException(output, "exists");
            string old = output + $".old-{Guid.NewGuid():N}";
            Directory.Move(output, old);
            Directory.Move(finished, output);
            Directory.Delete(old, recursive: true);
            return;
        }
        if (Directory.Exists(output)) Directory.Delete(output);
        Directory.Move(finished, output);
    }
}
